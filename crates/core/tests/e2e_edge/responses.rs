//! Upstream responses that must not reach the client as they are: each is a 502 with
//! the JSON body, and the connection it came on is never used again.

use crate::gateway_to;
use gatehouse_test_support::raw::{exchange, RawOrigin, Reply};

/// (path, what the origin answers); every one of them is a 502.
pub(crate) const BROKEN: &[(&str, &[u8])] = &[
    ("unasked_101", b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nRAW"),
    ("content_length_twice", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"),
    ("content_lengths_differ", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nokk"),
    ("content_length_list", b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok"),
    ("content_length_negative", b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok"),
    ("te_and_content_length", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("te_gzip", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc"),
    ("te_chunked_then_gzip", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nabc"),
    ("te_gzip_then_chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("bad_status_code", b"HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("status_1000", b"HTTP/1.1 1000 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("status_099", b"HTTP/1.1 099 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("bad_version", b"HTTP/3.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("http09_reply", b"<html>hello</html>"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 2\r\n\r\nok"),
    ("space_before_colon", b"HTTP/1.1 200 OK\r\nx-a : 1\r\ncontent-length: 2\r\n\r\nok"),
    ("nul_in_value", b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\ncontent-length: 2\r\n\r\nok"),
    ("space_in_name", b"HTTP/1.1 200 OK\r\nx a: 1\r\ncontent-length: 2\r\n\r\nok"),
];

fn script(path: &str) -> Reply {
    let name = path.trim_start_matches('/');
    if let Some((_, bytes)) = BROKEN.iter().find(|(n, _)| *n == name) {
        // The HTTP/0.9 reply has no framing: the close ends it.
        return if name == "http09_reply" {
            Reply::closing(bytes)
        } else {
            Reply::raw(bytes)
        };
    }
    match name {
        "huge_head" => {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..5000 {
                head.extend_from_slice(format!("x-{i}: {}\r\n", "a".repeat(100)).as_bytes());
            }
            head.extend_from_slice(b"content-length: 2\r\n\r\nok");
            Reply::raw(&head)
        }
        "truncated_length" => Reply::closing(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
        "truncated_chunked" => Reply::closing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"),
        "bad_chunk_mid_body" => Reply::raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n"),
        "extra_after_body" => Reply::raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nevil!"),
        "no_content_with_body" => Reply::raw(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello"),
        "close_delimited" => Reply::closing(b"HTTP/1.1 200 OK\r\n\r\nclose-delimited body"),
        "early_hints" => Reply::raw(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        "http10_reply" => Reply::closing(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        _ => Reply::ok(),
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET /{path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn broken_responses_are_502_and_their_connection_is_dropped() {
    let origin = RawOrigin::start(|r| script(&r.target)).await;
    let gw = gateway_to(&origin, "").await;
    let addr = gw.addr("web");
    let mut failures = Vec::new();
    for name in BROKEN.iter().map(|(n, _)| *n).chain(["huge_head"]) {
        let (resp, _) = exchange(addr, &get(name)).await;
        let resp = resp.unwrap_or_else(|| panic!("{name}: no response"));
        if resp.status != 502 {
            failures.push(format!("{name}: status {}", resp.status));
            continue;
        }
        let body = resp.json();
        assert_eq!(body["error"], "upstream_protocol_error", "{name}");
        // The next request must not reuse the connection the broken response came on.
        let before = origin.connections();
        let (ok, _) = exchange(addr, &get("ok")).await;
        assert_eq!(ok.unwrap().status, 200, "{name}");
        if origin.connections() != before + 1 {
            failures.push(format!("{name}: the connection was used again"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A body cut short (by a close, or a bad chunk) after the head went out reaches the
/// client cut short too, never as a complete response.
#[tokio::test]
async fn cut_bodies_stay_cut() {
    let origin = RawOrigin::start(|r| script(&r.target)).await;
    let gw = gateway_to(&origin, "").await;
    let addr = gw.addr("web");
    let (resp, _) = exchange(addr, &get("truncated_length")).await;
    let resp = resp.unwrap();
    assert_eq!(resp.get("content-length"), Some("10"));
    assert!(!resp.ended, "{:?}", resp.body);
    for name in ["truncated_chunked", "bad_chunk_mid_body"] {
        let (resp, _) = exchange(addr, &get(name)).await;
        // Either nothing at all (the head was not out yet) or a cut body.
        if let Some(resp) = resp {
            assert!(
                !resp.ended,
                "{name}: the cut body was ended: {:?}",
                resp.body
            );
        }
        let before = origin.connections();
        let (ok, _) = exchange(addr, &get("ok")).await;
        assert_eq!(ok.unwrap().status, 200);
        assert_eq!(
            origin.connections(),
            before + 1,
            "{name}: the connection was used again"
        );
    }
}

/// Responses that are odd but well framed pass; what follows a response's end on the
/// connection, or a body a 204 may not have, keeps the connection from being reused.
#[tokio::test]
async fn odd_but_framed_responses_pass() {
    let origin = RawOrigin::start(|r| script(&r.target)).await;
    let gw = gateway_to(&origin, "").await;
    let addr = gw.addr("web");
    let (resp, _) = exchange(addr, &get("close_delimited")).await;
    assert_eq!(resp.unwrap().body, b"close-delimited body");
    let (resp, _) = exchange(addr, &get("early_hints")).await;
    assert_eq!(resp.unwrap().body, b"ok");
    let (resp, _) = exchange(addr, &get("http10_reply")).await;
    assert_eq!(resp.unwrap().body, b"ok");
    for name in ["extra_after_body", "no_content_with_body"] {
        let (resp, _) = exchange(addr, &get(name)).await;
        let resp = resp.unwrap();
        assert!(
            resp.body.is_empty() || resp.body == b"ok",
            "{name}: {:?}",
            resp.body
        );
        let before = origin.connections();
        let (ok, _) = exchange(addr, &get("ok")).await;
        assert_eq!(
            ok.unwrap().body,
            b"ok",
            "{name}: the next response is the origin's own"
        );
        assert_eq!(
            origin.connections(),
            before + 1,
            "{name}: the connection was used again"
        );
    }
}

/// A 101 to a protocol the client did not offer is a 502 as well.
#[tokio::test]
async fn a_switch_to_another_protocol_is_refused() {
    let origin = RawOrigin::start(|_| {
        Reply::raw(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
        )
    })
    .await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (resp, _) = exchange(gw.addr("web"), raw).await;
    let resp = resp.unwrap();
    assert_eq!(resp.status, 502);
    assert!(resp.json()["message"]
        .as_str()
        .unwrap()
        .contains("did not offer"));
}
