//! Every limit: header size and count (431), request body size from the listener and the
//! route (413, for Content-Length and chunked bodies), connections per listener, and
//! malformed requests (4xx, and the gateway keeps serving).

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn request_with_headers(count: usize, each: usize) -> Vec<u8> {
    let mut r = String::from("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..count {
        r.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(each)));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[tokio::test]
async fn header_size_over_the_limit_is_431() {
    let gw = TestGateway::start(&local_gateway(
        "[listeners.limits]\nmax_header_size = \"16KiB\"",
    ))
    .await;
    // 10 headers of 1000 bytes: about 10KB, under the limit.
    let ok = raw_exchange(gw.addr("web"), &request_with_headers(10, 1000)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // 20 headers of 1000 bytes: about 20KB, over it.
    let big = raw_exchange(gw.addr("web"), &request_with_headers(20, 1000)).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // Still serving.
    let after = raw_exchange(gw.addr("web"), &request_with_headers(1, 10)).await;
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
}

#[tokio::test]
async fn header_count_over_the_limit_is_431() {
    let gw = TestGateway::start(&local_gateway("[listeners.limits]\nmax_headers = 10")).await;
    // Host and Connection plus 8: exactly 10.
    let ok = raw_exchange(gw.addr("web"), &request_with_headers(8, 5)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let many = raw_exchange(gw.addr("web"), &request_with_headers(9, 5)).await;
    assert!(many.starts_with("HTTP/1.1 431"), "{many}");
}

/// An upstream that reads the whole body before answering with its length, so a body
/// cut by the gateway is never answered 200 first.
async fn body_reading_upstream() -> Upstream {
    Upstream::start(UpstreamOptions::default(), |req| async move {
        match req.into_body().collect().await {
            Ok(b) => ok_owned(format!("got {}", b.to_bytes().len())),
            Err(_) => ok_owned("body failed".into()),
        }
    })
    .await
}

fn ok_owned(s: String) -> http::Response<gatehouse_test_support::upstream::TestBody> {
    http::Response::new(gatehouse_test_support::upstream::full(s))
}

fn chunked(total: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..total / 100).map(|_| Ok(vec![b'x'; 100])).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn listener_body_limit_is_413_for_content_length_and_chunked() {
    let up = body_reading_upstream().await;
    let toml = config(up.addr, "", "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[routes]]",
        "listen = \"127.0.0.1:0\"\n[listeners.limits]\nmax_body_size = \"1KiB\"\n\n[[routes]]",
    );
    let gw = TestGateway::start(&toml).await;
    let c = fresh_client();
    let url = gw.url("web", "/upload");
    let under = c.post(&url).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(under.text().await.unwrap(), "got 1024");
    let over = c.post(&url).body(vec![b'x'; 1025]).send().await.unwrap();
    expect_error(over, 413, "payload_too_large").await;
    let chunked_under = c.post(&url).body(chunked(1000)).send().await.unwrap();
    assert_eq!(chunked_under.text().await.unwrap(), "got 1000");
    let chunked_over = c.post(&url).body(chunked(3000)).send().await.unwrap();
    expect_error(chunked_over, 413, "payload_too_large").await;
    // The over-limit Content-Length never reached the upstream; the chunked one did,
    // and was cut there.
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn route_body_limit_overrides_the_listener_and_is_413() {
    let up = body_reading_upstream().await;
    let toml = config(up.addr, "max_body_size = 100", "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[routes]]",
        "listen = \"127.0.0.1:0\"\n[listeners.limits]\nmax_body_size = \"1MiB\"\n\n[[routes]]",
    );
    let gw = TestGateway::start(&toml).await;
    let c = fresh_client();
    let url = gw.url("web", "/upload");
    let under = c.post(&url).body(vec![b'x'; 100]).send().await.unwrap();
    assert_eq!(under.text().await.unwrap(), "got 100");
    let over = c.post(&url).body(vec![b'x'; 200]).send().await.unwrap();
    expect_error(over, 413, "payload_too_large").await;
    let chunked_over = c.post(&url).body(chunked(200)).send().await.unwrap();
    expect_error(chunked_over, 413, "payload_too_large").await;
}

/// With max_connections = 1 a second connection waits, unserved, until the first closes.
#[tokio::test(start_paused = true)]
async fn second_connection_waits_for_the_first_at_max_connections() {
    let gw = TestGateway::start(&local_gateway("max_connections = 1")).await;
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(gw.addr("web")).await.unwrap();
    first.write_all(req).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    // The kernel completes the second handshake, but the gateway does not accept it.
    let mut second = TcpStream::connect(gw.addr("web")).await.unwrap();
    second.write_all(req).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second)).await;
    assert!(
        waiting.is_err(),
        "second connection served while the first is open"
    );
    // The first still works, and once it closes the second is served.
    first.write_all(req).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    drop(first);
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start(&local_gateway("")).await;
    let cases: [&[u8]; 6] = [
        b"\x00\x01\x02garbage\xff\xfe\r\n\r\n",
        b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ];
    for bytes in cases {
        let got = raw_exchange(gw.addr("web"), bytes).await;
        let status: u16 = got
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status for {bytes:?}: {got:?}"));
        assert!((400..500).contains(&status), "{bytes:?} -> {got}");
    }
    // No Host on HTTP/1.1: the gateway's own JSON 400.
    let no_host = raw_exchange(
        gw.addr("web"),
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    assert!(no_host.contains("\"error\":\"bad_request\""), "{no_host}");
    let fine = raw_exchange(
        gw.addr("web"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        fine.starts_with("HTTP/1.1 200") && fine.ends_with("hi"),
        "{fine}"
    );
}
