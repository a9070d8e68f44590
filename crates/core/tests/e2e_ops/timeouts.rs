//! Every timeout, on the paused clock: client header read (slowloris), client idle,
//! upstream connect, upstream response headers, and the whole-request deadline (before
//! the response, and while its body streams).

use crate::*;
use gatehouse_test_support::{channel_body, Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

fn gateway_with_listener(timeouts: &str) -> String {
    local_gateway(&format!("[listeners.timeouts]\n{timeouts}"))
}

/// [`config`] proxying to `upstream`, with `timeouts` on the listener.
fn proxied_with_listener(upstream: SocketAddr, timeouts: &str) -> String {
    let toml = config(upstream, "", "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[routes]]",
        &format!("listen = \"127.0.0.1:0\"\n[listeners.timeouts]\n{timeouts}\n\n[[routes]]"),
    );
    assert!(toml.contains(timeouts), "the listener table moved: {toml}");
    toml
}

/// A client that sends half a request head and stops is cut off at header_read.
#[tokio::test(start_paused = true)]
async fn slowloris_partial_head_is_closed_at_header_read() {
    let gw = TestGateway::start(&gateway_with_listener("header_read = \"2s\"")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Still open just before the deadline...
    let mut one = [0u8; 1];
    let early = timeout(Duration::from_millis(1900), async {
        use tokio::io::AsyncReadExt;
        s.read(&mut one).await
    })
    .await;
    assert!(early.is_err(), "closed before header_read: {early:?}");
    // ...and closed (no response, or a 408) at it.
    let got = read_to_close(&mut s).await;
    let t = since(start);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
}

/// Trickling a header line every second does not extend the header deadline.
#[tokio::test(start_paused = true)]
async fn slowloris_trickle_does_not_extend_header_read() {
    let gw = TestGateway::start(&gateway_with_listener("header_read = \"3s\"")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        (out, since(start))
    };
    let ((got, t), ()) = tokio::join!(read, trickle);
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        t >= Duration::from_secs(3) && t < Duration::from_millis(3100),
        "{t:?}"
    );
}

/// A kept-alive connection with no traffic is closed after `idle`.
#[tokio::test(start_paused = true)]
async fn idle_keepalive_connection_is_closed_after_idle() {
    let gw = TestGateway::start(&gateway_with_listener(
        "idle = \"8s\"\nheader_read = \"20s\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let start = Instant::now();
    let early = timeout(Duration::from_millis(7900), read_to_close(&mut s)).await;
    assert!(early.is_err(), "closed before idle: {:?}", since(start));
    // The idle check runs in quarters of `idle`: closed within 25% after it.
    let got = read_to_close(&mut s).await;
    let t = since(start);
    assert_eq!(got, "");
    assert!(
        t >= Duration::from_secs(8) && t <= Duration::from_secs(10),
        "{t:?}"
    );
    // A fresh connection is served.
    let again = raw_exchange(
        gw.addr("web"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

/// As documented (docs/config.md), on HTTP/1.1 `header_read` also bounds the wait for
/// the next request on a kept-alive connection, when it is shorter than `idle`.
#[tokio::test(start_paused = true)]
async fn header_read_bounds_the_wait_for_the_next_request() {
    let gw = TestGateway::start(&gateway_with_listener(
        "idle = \"60s\"\nheader_read = \"5s\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    assert_eq!(read_to_close(&mut s).await, "");
    let t = since(start);
    assert!(
        t >= Duration::from_secs(5) && t < Duration::from_millis(5100),
        "{t:?}"
    );
}

/// `header_read` times request heads on HTTP/1 only: an h2c connection between
/// requests is idle, not slow, and stays open past it.
#[tokio::test(start_paused = true)]
async fn h2c_connection_between_requests_outlives_header_read() {
    let gw = TestGateway::start(&gateway_with_listener(
        "idle = \"8s\"\nheader_read = \"2s\"",
    ))
    .await;
    let mut c = Conn::plain(gw.addr("web"), Proto::H2).await;
    assert_eq!(c.get("/").await.0.status, 200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.get("/").await.0.status, 200);
}

/// A response body that streams for longer than `header_read` is not cut: the wait
/// for the next head starts only when the body ends, and then is bounded again.
#[tokio::test(start_paused = true)]
async fn long_response_body_is_not_cut_at_header_read() {
    let up = Upstream::start(UpstreamOptions::default(), |_req| async {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            for i in 0..4 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(format!("{i}").into()).await.is_err() {
                    return;
                }
            }
        });
        let mut resp = http::Response::new(body);
        resp.headers_mut().insert("content-length", 4.into());
        resp
    })
    .await;
    let gw = TestGateway::start(&proxied_with_listener(up.addr, "header_read = \"2s\"")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("0123"),
        "{resp}"
    );
    let start = Instant::now();
    assert_eq!(read_to_close(&mut s).await, "");
    let t = since(start);
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
}

/// A request waiting on a slow upstream is not "idle": it outlives the idle timeout.
#[tokio::test(start_paused = true)]
async fn slow_response_outlives_client_idle_timeout() {
    let up = Upstream::start(UpstreamOptions::default(), |_req| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        ok("slow")
    })
    .await;
    let gw = TestGateway::start(&proxied_with_listener(up.addr, "idle = \"2s\"")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow");
}

/// An upstream whose accept queue is full drops the SYN, so connect hangs: 504 at the
/// upstream's connect timeout.
#[tokio::test(start_paused = true)]
async fn upstream_connect_timeout_is_504() {
    let (addr, _filler) = full_backlog_upstream();
    let gw = TestGateway::start(&config(addr, "", "[upstreams.timeouts]\nconnect = \"3s\"")).await;
    let start = Instant::now();
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    let t = since(start);
    let body = expect_error(resp, 504, "upstream_timeout").await;
    assert!(
        body["message"].as_str().unwrap().contains("connect"),
        "{body}"
    );
    assert!(
        t >= Duration::from_secs(3) && t < Duration::from_millis(3100),
        "{t:?}"
    );
}

/// A listener with backlog 0 and one connection that is never accepted: Linux drops
/// further SYNs while the accept queue is full.
fn full_backlog_upstream() -> (SocketAddr, (socket2::Socket, std::net::TcpStream)) {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    (addr, (sock, filler))
}

/// An upstream that accepts and never answers: 504 at routes.timeouts.upstream_response.
#[tokio::test(start_paused = true)]
async fn upstream_response_timeout_is_504() {
    let (addr, _up) = silent_upstream().await;
    let gw = TestGateway::start(&config(
        addr,
        "[routes.timeouts]\nupstream_response = \"2s\"",
        "",
    ))
    .await;
    let start = Instant::now();
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    let t = since(start);
    let body = expect_error(resp, 504, "upstream_timeout").await;
    assert!(
        body["message"].as_str().unwrap().contains("did not answer"),
        "{body}"
    );
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
}

/// An upstream that never reads: a retried group buffers a body up to `buffer_body`
/// and writes it with the head in one piece, which stops once the socket buffers are
/// full. The response deadline covers that write too: 504 at upstream_response, not a
/// request held for ever.
#[tokio::test(start_paused = true)]
async fn a_write_the_upstream_never_reads_ends_at_the_response_deadline() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let deaf = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let gw = TestGateway::start(&config(
        addr,
        "[routes.timeouts]\nupstream_response = \"2s\"",
        "[upstreams.retry]\nretries = 1\nbuffer_body = \"32MiB\"",
    ))
    .await;
    // Far more than loopback's socket buffers hold, so the write cannot finish.
    let body = vec![b'x'; 24 << 20];
    let start = Instant::now();
    let sent = reqwest::Client::new()
        .post(gw.url("web", "/"))
        .body(body)
        .send();
    let resp = timeout(Duration::from_secs(10), sent)
        .await
        .expect("the request was held past its deadline")
        .unwrap();
    let t = since(start);
    expect_error(resp, 504, "upstream_timeout").await;
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
    deaf.abort();
}

/// The response deadline is a timer kept on the pooled upstream connection and moved by
/// each request on it: one that passed while the connection waited in the pool does not
/// end the next request, which still ends at its own deadline.
#[tokio::test(start_paused = true)]
async fn a_pooled_connection_times_each_request_from_its_own_start() {
    let up = Upstream::start(UpstreamOptions::default(), |req| async move {
        let wait = req
            .headers()
            .get("x-wait-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        ok("ok")
    })
    .await;
    let gw = TestGateway::start(&config(
        up.addr,
        "[routes.timeouts]\nupstream_response = \"1s\"",
        "",
    ))
    .await;
    let client = reqwest::Client::new();
    let get = |wait: u64| {
        client
            .get(gw.url("web", "/"))
            .header("x-wait-ms", wait.to_string())
            .send()
    };
    assert_eq!(get(0).await.unwrap().status(), 200);
    // The first request's deadline passes while its connection is pooled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(800).await.unwrap().status(), 200);
    let start = Instant::now();
    let resp = get(5000).await.unwrap();
    let t = since(start);
    expect_error(resp, 504, "upstream_timeout").await;
    assert!(
        t >= Duration::from_secs(1) && t < Duration::from_millis(1100),
        "{t:?}"
    );
    assert_eq!(up.count(), 3);
    assert_eq!(
        up.connections(),
        1,
        "the three went on one pooled connection"
    );
}

/// A request deadline shorter than the response deadline wins: 504 request_timeout.
#[tokio::test(start_paused = true)]
async fn request_timeout_before_response_is_504() {
    let (addr, _up) = silent_upstream().await;
    let gw = TestGateway::start(&config(
        addr,
        "[routes.timeouts]\nrequest = \"1s\"\nupstream_response = \"5s\"",
        "",
    ))
    .await;
    let start = Instant::now();
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    let t = since(start);
    expect_error(resp, 504, "request_timeout").await;
    assert!(
        t >= Duration::from_secs(1) && t < Duration::from_millis(1100),
        "{t:?}"
    );
}

/// A response body that stalls mid-stream is cut at the request deadline: the client
/// gets the first bytes, then an error (never a clean, silently short body).
#[tokio::test(start_paused = true)]
async fn request_timeout_cuts_a_stalled_response_body() {
    let up = Upstream::start(UpstreamOptions::default(), |_req| async {
        http::Response::new(stalling_body("first;"))
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, "[routes.timeouts]\nrequest = \"3s\"", "")).await;
    let start = Instant::now();
    let mut resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first;");
    let end = resp.chunk().await;
    let t = since(start);
    assert!(end.is_err(), "body ended cleanly: {end:?}");
    assert!(
        t >= Duration::from_secs(3) && t < Duration::from_millis(3100),
        "{t:?}"
    );
}

/// A new connection that sends nothing at all is idle: it is closed at the idle timeout
/// (the protocol is not known before its first bytes, so no header deadline runs yet).
/// Deferred accept is off: with it the kernel would hold the connection a second of
/// real time first (see `defer_accept.rs`).
#[tokio::test(start_paused = true)]
async fn silent_new_connection_is_closed_at_idle() {
    let gw = TestGateway::start(&local_gateway(
        "defer_accept = false\n[listeners.timeouts]\nidle = \"8s\"\nheader_read = \"2s\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    let start = Instant::now();
    assert_eq!(read_to_close(&mut s).await, "");
    let t = since(start);
    assert!(
        t >= Duration::from_secs(8) && t <= Duration::from_secs(10),
        "{t:?}"
    );
}
