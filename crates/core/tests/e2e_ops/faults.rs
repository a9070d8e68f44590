//! Upstream faults mid-exchange: a reset or a stall in the middle of a body, and a
//! kept-alive connection the upstream closes just as a request goes out on it. The
//! client always gets a clean error (a 502, or a body cut short, never a hang past the
//! route's and listener's timeouts), an idempotent request on a stale pooled connection
//! is sent once more on a new one, and nothing panics.

use crate::*;
use gatehouse_test_support::raw::{exchange, read_response, RawOrigin, Reply};
use gatehouse_test_support::TestGateway;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An upstream that writes `head_and_part` of a response, then resets the connection
/// (SO_LINGER 0): the kernel sends RST instead of FIN.
async fn resetting_upstream(head_and_part: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(head_and_part).await;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_reset_mid_body_cuts_the_clients_body() {
    for head in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nfirst bytes"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\nfirst bytes\r\n",
    ] {
        let addr = resetting_upstream(head).await;
        let gw = TestGateway::start(&config(addr, "", "")).await;
        let (resp, _) = exchange(gw.addr("web"), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        // The head may or may not have gone out before the reset; if it did, the body
        // must read as cut.
        if let Some(resp) = resp {
            assert!(
                resp.status == 502 || !resp.ended,
                "a reset body read as complete: {} {:?}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
    }
}

/// With no request deadline on the route, a body that stalls is still bounded: the
/// client connection moves no byte, so it closes at the listener's idle timeout.
#[tokio::test(start_paused = true)]
async fn a_body_stalled_mid_way_ends_at_the_idle_timeout() {
    let up = gatehouse_test_support::Upstream::start(Default::default(), |_| async {
        http::Response::new(stalling_body("first bytes"))
    })
    .await;
    let toml = config(up.addr, "", "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[routes]]",
        "listen = \"127.0.0.1:0\"\ntimeouts = { idle = \"8s\" }\n\n[[routes]]",
    );
    assert!(toml.contains("idle = \"8s\""));
    let gw = TestGateway::start(&toml).await;
    let start = tokio::time::Instant::now();
    let got = raw_exchange(gw.addr("web"), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.contains("first bytes") && !got.ends_with("0\r\n\r\n"),
        "{got}"
    );
    let t = since(start);
    assert!(
        t >= Duration::from_secs(8) && t <= Duration::from_secs(11),
        "{t:?}"
    );
}

/// An origin that answers the first request on each connection, then reads the next
/// and closes without an answer: a keep-alive timeout that fires just as a request is
/// written.
async fn closing_after_one() -> (RawOrigin, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let n = answered.clone();
    let origin = RawOrigin::start(move |req| {
        if req.get("x-first").is_some() {
            n.fetch_add(1, Ordering::Relaxed);
            Reply::ok()
        } else {
            Reply::closing(b"")
        }
    })
    .await;
    (origin, answered)
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_request_on_a_stale_pooled_connection_is_sent_again() {
    let (origin, _) = closing_after_one().await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let addr = gw.addr("web");
    let (first, _) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\nX-First: 1\r\n\r\n").await;
    assert_eq!(first.unwrap().status, 200);
    // Long enough in the pool to be worth a spare copy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The pooled connection breaks under this one; the new connection closes too (the
    // origin only answers `x-first`), so it is sent again exactly once, then 502.
    let (second, _) = exchange(addr, b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(second.unwrap().status, 502);
    let tries = origin
        .seen()
        .iter()
        .filter(|r| r.target == "/again")
        .count();
    assert_eq!(
        tries, 2,
        "sent once on the stale connection and once on a new one"
    );
    assert_eq!(origin.connections(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_retry_on_a_new_connection_gets_the_answer() {
    let origin = RawOrigin::start({
        let conns = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            usize,
        >::new()));
        move |req| {
            // `/again` is dropped the first time (on the stale pooled connection) and
            // answered the second (on the new one).
            let mut c = conns.lock().unwrap();
            let n = c.entry(req.target.clone()).or_default();
            *n += 1;
            if req.target == "/again" && *n == 1 {
                Reply::closing(b"")
            } else {
                Reply::ok()
            }
        }
    })
    .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let addr = gw.addr("web");
    let (first, _) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(first.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (second, _) = exchange(addr, b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(second.unwrap().body, b"ok");
    assert_eq!(origin.connections(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_post_on_a_stale_connection_is_not_sent_twice() {
    let (origin, _) = closing_after_one().await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let addr = gw.addr("web");
    let (first, _) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\nX-First: 1\r\n\r\n").await;
    assert_eq!(first.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (post, _) = exchange(
        addr,
        b"POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    let post = post.unwrap();
    assert_eq!(post.status, 502);
    assert_eq!(post.json()["error"], "upstream_protocol_error");
    let tries = origin.seen().iter().filter(|r| r.target == "/pay").count();
    assert_eq!(tries, 1);
}

/// A pooled connection the upstream closed while it sat idle is seen closed before a
/// request is written to it (the kernel tells: the FIN arrived), and a new one is used.
#[tokio::test]
async fn a_pooled_connection_closed_while_idle_is_not_used() {
    let origin =
        RawOrigin::start(|_| Reply::closing(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
            .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        let r = client.get(gw.url("web", "/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        // The pool's connection task sees the FIN and drops it before the next one.
        let snap = gw.gw.snapshot();
        let ep = snap.upstreams["backend"].endpoints()[0].clone();
        eventually("the closed connection to leave the pool", || {
            let idle = ep.pool.idle();
            async move { (idle == 0).then_some(()) }
        })
        .await;
    }
    assert_eq!(origin.seen().len(), 5);
    assert_eq!(origin.connections(), 5);
}

/// A raw request over a kept-alive connection right after a 200, to check the
/// connection itself survives an upstream fault.
#[tokio::test]
async fn the_client_connection_survives_an_upstream_502() {
    let addr = raw_upstream(b"HTTP/1.1 2x0 broken\r\n\r\n").await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let resp = read_response(&mut s).await.unwrap();
        assert_eq!(resp.status, 502);
    }
}
