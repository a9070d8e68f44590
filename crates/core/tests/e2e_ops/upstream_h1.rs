//! The own upstream HTTP/1.1 client (`http::h1::conn`) at the edges where it differs
//! from a channel-driven one: a pooled connection closed while idle is seen before a
//! request is written (so even a POST goes out once, on a new connection); a request
//! body and its response body flow at once; an upstream that answers before reading
//! the whole upload is passed on and its connection not reused; bytes after a
//! response's end keep its connection out of the pool; bytes the upstream sent right
//! after its 101 reach the client through the tunnel; a request the client gives up on
//! before its answer leaves its connection pooled once the answer has been read.

use crate::*;
use gatehouse_test_support::raw::{exchange, RawOrigin, Reply};
use gatehouse_test_support::{TestGateway, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn pooled_idle(gw: &TestGateway) -> usize {
    let snap = gw.gw.snapshot();
    snap.upstreams["backend"].endpoints()[0].pool.idle()
}

#[tokio::test]
async fn a_post_on_a_connection_closed_while_idle_goes_out_once_on_a_new_one() {
    // Each answer is kept alive by its head, but the origin closes after it: the FIN
    // reaches the pooled connection while it is idle.
    let origin =
        RawOrigin::start(|_| Reply::closing(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
            .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let addr = gw.addr("web");
    let (first, _) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(first.unwrap().status, 200);
    eventually("the closed connection to leave the pool", || {
        let idle = pooled_idle(&gw);
        async move { (idle == 0).then_some(()) }
    })
    .await;
    let (post, _) = exchange(
        addr,
        b"POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(post.unwrap().status, 200);
    let pays: Vec<_> = origin
        .seen()
        .into_iter()
        .filter(|r| r.target == "/pay")
        .collect();
    assert_eq!(pays.len(), 1, "the POST went out once");
    assert_eq!(pays[0].body, b"hi");
    assert_eq!(origin.connections(), 2);
}

/// An echoing upstream: the response body is the request body, frame by frame.
async fn echo_upstream() -> Upstream {
    Upstream::start(Default::default(), |req| async move {
        http::Response::new(gatehouse_test_support::upstream::send_body(req.into_body()))
    })
    .await
}

#[tokio::test]
async fn an_upload_and_its_echo_flow_at_once() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Each piece comes back before the next is sent: the proxy writes the upload while
    // it streams the response, in both directions at once.
    for piece in ["alpha-1", "bravo-2", "charlie-3"] {
        s.write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        read_until(&mut s, &mut seen, piece.as_bytes()).await;
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    read_until(&mut s, &mut seen, b"0\r\n\r\n").await;
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(up.connections(), 1);
}

/// An upstream that reads a request head, writes `answer` in one write, then echoes
/// what else arrives (`echo`) or reads it away; with the connections it accepted.
async fn after_head(answer: &'static [u8], echo: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || (echo && s.write_all(&b[..n]).await.is_err()) {
                        break;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_is_passed_on_and_its_connection_not_reused() {
    // Reads the head only, answers 413 at once (kept alive by its head), and reads on.
    let (addr, conns) = after_head(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\n\r\ntoo big",
        false,
    )
    .await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    // The upload never ends: the answer must come anyway.
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, b"too big").await;
    assert!(
        seen.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    drop(s);
    let (next, _) = exchange(gw.addr("web"), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(next.unwrap().status, 413);
    assert_eq!(
        conns.load(Ordering::Relaxed),
        2,
        "the connection whose upload was cut short was used again"
    );
}

#[tokio::test]
async fn bytes_after_a_responses_end_keep_its_connection_out_of_the_pool() {
    let origin = RawOrigin::start(|r| {
        if r.target == "/extra" {
            Reply::raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        } else {
            Reply::ok()
        }
    })
    .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    let addr = gw.addr("web");
    let (resp, _) = exchange(addr, b"GET /extra HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let resp = resp.unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
    let (next, _) = exchange(addr, b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(next.unwrap().body, b"ok");
    assert_eq!(
        origin.connections(),
        2,
        "the connection with stray bytes was reused"
    );
    // A clean response's connection is reused.
    let (again, _) = exchange(addr, b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(again.unwrap().body, b"ok");
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn bytes_sent_with_the_101_reach_the_client() {
    // The switch and the first bytes of the new protocol in one write, then an echo.
    let (addr, _) = after_head(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw\r\nconnection: upgrade\r\n\r\nHELLO",
        true,
    )
    .await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET /tunnel HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, b"HELLO").await;
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s.write_all(b"ping").await.unwrap();
    read_until(&mut s, &mut seen, b"ping").await;
}

#[tokio::test]
async fn a_request_given_up_on_before_its_answer_leaves_its_connection_pooled() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let up = Upstream::start(Default::default(), move |_req| {
        let g = g.clone();
        async move {
            g.notified().await;
            http::Response::new(full("late"))
        }
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let ep = gw.gw.snapshot().upstreams["backend"].endpoints()[0].clone();
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    eventually("the request to reach the upstream", || {
        let n = up.count();
        async move { (n == 1).then_some(()) }
    })
    .await;
    // The client goes away while the upstream is still working on its answer.
    drop(s);
    eventually("the gateway to give the request up", || {
        let n = ep.in_flight.load(Ordering::Relaxed);
        async move { (n == 0).then_some(()) }
    })
    .await;
    gate.notify_one();
    eventually("the late answer's connection to be pooled", || {
        let idle = ep.pool.idle();
        async move { (idle == 1).then_some(()) }
    })
    .await;
    gate.notify_one();
    let (next, _) = exchange(gw.addr("web"), b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(next.unwrap().body, b"late");
    assert_eq!(
        up.connections(),
        1,
        "the given-up request's connection was closed"
    );
}
