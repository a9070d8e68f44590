//! Streaming body edits end to end (`transform.response_replace`, `request_replace`):
//! a pattern split across the upstream's chunks is still replaced, each chunk reaches
//! the client before the upstream sends the next, a body far past the buffer limit
//! passes, the head is fixed up (no `Content-Length`, a weak `ETag`), and what is not a
//! text type, or is encoded, passes byte for byte.

use super::{config, echo};
use gatehouse_test_support::upstream::{channel_body, full};
use gatehouse_test_support::{TestGateway, Upstream};
use std::time::Duration;

const RESPONSE: &str = r#"transform.response_replace = [{ from = "http://10.0.0.5:8080", to = "https://api.example.com" }, { from = "secret", to = "******" }]"#;

#[tokio::test]
async fn a_response_is_edited_chunk_by_chunk_as_it_streams() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::mpsc::Sender<bytes::Bytes>>(1);
    let up = Upstream::start(Default::default(), move |_req| {
        let tx = tx.clone();
        async move {
            let (chunks, body) = channel_body();
            tx.send(chunks).await.unwrap();
            http::Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("etag", "\"v7\"")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, RESPONSE, "")).await;
    let mut resp = reqwest::get(gw.url("web", "/page")).await.unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["etag"], "W/\"v7\"");
    let chunks = rx.recv().await.unwrap();
    let mut got = Vec::new();
    // The link is split across three chunks; each chunk gives some bytes (all but the
    // last 19, which may begin a match) that arrive while the upstream holds the next.
    for part in [
        "<a href=\"http://10.0",
        ".0.5:80",
        "80/docs\">docs</a> <p>sec",
        "ret</p>",
        &"x".repeat(4096),
    ] {
        chunks
            .send(bytes::Bytes::from(part.to_string()))
            .await
            .unwrap();
        let c = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("a chunk's bytes arrive before the next is sent")
            .unwrap()
            .unwrap();
        got.extend_from_slice(&c);
    }
    drop(chunks);
    while let Some(c) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    let text = String::from_utf8(got).unwrap();
    assert_eq!(
        text,
        format!(
            "<a href=\"https://api.example.com/docs\">docs</a> <p>******</p>{}",
            "x".repeat(4096)
        )
    );
}

#[tokio::test]
async fn a_body_far_past_the_buffer_limit_streams_through() {
    // 8 MiB of text with a pattern every 64 KiB; the buffer limit is 64 KiB.
    let block = format!("{}secret\n", "y".repeat(65_536 - 7));
    let body = block.repeat(128);
    let up = Upstream::start(Default::default(), move |_req| {
        let body = body.clone();
        async move {
            http::Response::builder()
                .header("content-type", "text/plain")
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let extra = format!("{RESPONSE}\nbody_buffer_limit = \"64KiB\"");
    let gw = TestGateway::start(&config(up.addr, &extra, "")).await;
    let resp = reqwest::get(gw.url("web", "/big")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text.len(), 128 * 65_536);
    assert_eq!(text.matches("******\n").count(), 128);
    assert!(!text.contains("secret"));
}

#[tokio::test]
async fn other_types_and_encoded_bodies_pass_as_they_are() {
    let up = Upstream::start(Default::default(), |req| async move {
        let gz = req.uri().path() == "/gz";
        let mut b = http::Response::builder();
        b = if gz {
            b.header("content-type", "text/plain")
                .header("content-encoding", "gzip")
        } else {
            b.header("content-type", "application/octet-stream")
        };
        b.body(full("secret")).unwrap()
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, RESPONSE, "")).await;
    for path in ["/bin", "/gz"] {
        let resp = reqwest::Client::builder()
            .no_gzip()
            .build()
            .unwrap()
            .get(gw.url("web", path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-length"], "6", "{path}");
        assert_eq!(resp.bytes().await.unwrap(), "secret", "{path}");
    }
}

#[tokio::test]
async fn a_request_body_is_edited_on_its_way_upstream() {
    let up = echo().await;
    let extra = r#"transform = { request_replace = [{ from = "prod-db", to = "replica-db" }], replace_types = ["application/json"] }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let resp = c
        .post(gw.url("web", "/jobs"))
        .header("content-type", "application/json")
        .body(r#"{"source": "prod-db", "copy": "prod-db"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"source": "replica-db", "copy": "replica-db"}"#
    );
    // Sent chunked, since the length changed; another type is not touched.
    let seen = up.last();
    assert!(seen.headers.get("content-length").is_none());
    assert_eq!(seen.headers["transfer-encoding"], "chunked");
    let resp = c
        .post(gw.url("web", "/jobs"))
        .header("content-type", "text/plain")
        .body("prod-db")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "prod-db");
    assert_eq!(up.last().headers["content-length"], "7");
}
