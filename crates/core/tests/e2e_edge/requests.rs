//! Every case of the request corpus through Gatehouse: the status the client gets, the
//! JSON body and the close on a refusal, and what the origin saw.

use crate::corpus::{Origin, CASES, NEVER_FORWARDED};
use crate::gateway_to;
use gatehouse_test_support::raw::{closes, exchange, RawOrigin};

#[tokio::test]
async fn the_request_corpus() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let addr = gw.addr("web");
    let mut failures = Vec::new();
    for case in CASES {
        origin.clear();
        let (resp, mut conn) = exchange(addr, case.raw).await;
        let outcome = std::panic::AssertUnwindSafe(async {
            let resp = resp.unwrap_or_else(|| panic!("no response"));
            assert_eq!(
                resp.status,
                case.status,
                "status; body {:?}",
                String::from_utf8_lossy(&resp.body)
            );
            let seen = origin.seen();
            match case.origin {
                Origin::Nothing => {
                    assert!(seen.is_empty(), "the origin saw {seen:?}");
                    if resp.status >= 400 {
                        let body = resp.json();
                        assert_eq!(body["status"], case.status);
                        assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
                        assert!(
                            closes(&mut conn).await,
                            "the connection stays open after a refusal"
                        );
                    } else {
                        assert!(
                            resp.get("allow").is_some(),
                            "an OPTIONS answer names what is allowed"
                        );
                    }
                }
                Origin::One(check) => {
                    assert_eq!(seen.len(), 1, "the origin saw {seen:?}");
                    check(&seen[0]);
                    for name in NEVER_FORWARDED {
                        assert!(
                            seen[0].get(name).is_none(),
                            "`{name}` reached the origin: {:?}",
                            seen[0]
                        );
                    }
                }
            }
        });
        if let Err(e) = futures_util::FutureExt::catch_unwind(outcome).await {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Transfer-Encoding with Content-Length: hyper goes by the chunked framing, drops the
/// Content-Length, and closes the connection after the response (RFC 9112 6.1), so a
/// request smuggled behind it is never read.
#[tokio::test]
async fn te_with_content_length_closes_the_connection_after() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    assert_eq!(resp.unwrap().status, 200);
    assert!(closes(&mut conn).await);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/");
}

/// A refused CONNECT closes the connection: the bytes after it are the tunnel the
/// client hoped for, not a request.
#[tokio::test]
async fn connect_is_never_a_tunnel() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\nGET /inner HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    let resp = resp.unwrap();
    assert_eq!(resp.status, 405);
    assert!(resp.get("allow").is_some_and(|a| !a.contains("CONNECT")));
    assert!(closes(&mut conn).await);
    assert!(origin.seen().is_empty());
    assert_eq!(origin.connections(), 0);
}

/// An h2c upgrade goes on as a plain request: answered 200 over HTTP/1.1, never 101.
#[tokio::test]
async fn h2c_upgrade_is_answered_as_http1() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    assert_eq!(resp.unwrap().status, 200);
    let next = gatehouse_test_support::raw::read_response(&mut conn)
        .await
        .unwrap();
    assert_eq!(next.status, 200, "the connection is still HTTP/1.1");
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.get("upgrade").is_none()));
}

/// A response that ends with a close while the client has sent more than was read (a
/// `Connection: close` request with a pipelined upload behind it): the close lingers,
/// reading the rest, so the response's tail still in the send queue is not dropped by
/// the reset a close with unread bytes sends. The client reads slowly (a small receive
/// buffer), so most of the response is still queued when the server is done with it.
#[tokio::test]
async fn a_close_with_unread_bytes_does_not_cut_the_response() {
    use tokio::io::AsyncWriteExt;
    const BIG: usize = 4 * 1024 * 1024;
    let up = gatehouse_test_support::Upstream::start(Default::default(), |_| async {
        http::Response::new(gatehouse_test_support::full(vec![b'a'; BIG]))
    })
    .await;
    let toml = format!(
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"all\"\nupstream = \"b\"\n[[upstreams]]\nname = \"b\"\nendpoints = [\"{}\"]\n",
        up.addr
    );
    let gw = gatehouse_test_support::TestGateway::start(&toml).await;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr("web").into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut s = tokio::net::TcpStream::from_std(sock.into()).unwrap();
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 64 * 1024));
    s.write_all(&raw).await.unwrap();
    let resp = gatehouse_test_support::raw::read_response(&mut s)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.ended,
        "the response was cut at {} of {BIG} bytes",
        resp.body.len()
    );
}

/// The lingering close stays out of upgraded connections: when the upstream half-closes
/// a tunnel, what the client sends after that still reaches the upstream.
#[tokio::test]
async fn a_tunnel_half_close_passes_as_it_is() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let late = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            head.extend_from_slice(&b[..n]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\nbye",
        )
        .await
        .unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let gw = gatehouse_test_support::TestGateway::start(&format!(
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"all\"\nupstream = \"b\"\n[[upstreams]]\nname = \"b\"\nendpoints = [\"{up}\"]\n"
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("web"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(got.ends_with(b"bye"), "{:?}", String::from_utf8_lossy(&got));
    s.write_all(b"late data").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(late.await.unwrap(), b"late data");
}
