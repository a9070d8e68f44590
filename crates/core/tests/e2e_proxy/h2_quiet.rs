//! HTTP/2 connections that go quiet between requests. Our h2 (vendor/h2/GATEHOUSE.md)
//! gives back a connection's read, write and HPACK buffers whenever it has no stream
//! open and nothing left to write, and takes new ones when frames move again: every
//! request after a quiet moment runs on fresh buffers, on the client side (the gateway
//! as an HTTP/2 server) and on the upstream side (the gateway as an HTTP/2 client).

use super::common::{pattern, plain_listener, route_to, QUIET};
use bytes::Bytes;
use gatehouse_test_support::{full, Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use http::{Method, Response};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An upstream that echoes the request body and says, in response fields, the value of
/// the request's `x-custom` and the length of its `x-big`.
async fn echo(http2_only: bool) -> Upstream {
    let opts = UpstreamOptions {
        http2_only,
        ..Default::default()
    };
    Upstream::start(opts, |req| async move {
        let field = |name: &str| req.headers().get(name).map(|v| v.as_bytes().to_vec());
        let custom = field("x-custom").unwrap_or_default();
        let big = field("x-big").map_or(0, |v| v.len());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::builder()
            .header("x-custom-seen", custom)
            .header("x-big-len", big.to_string())
            .body(full(body))
            .unwrap()
    })
    .await
}

/// The echo upstream (HTTP/2 or not) behind a gateway, and an h2c client connection to
/// it.
struct Setup {
    up: Upstream,
    gw: TestGateway,
    conn: Conn,
}

async fn setup(http2: bool) -> Setup {
    let up = echo(http2).await;
    let extra = if http2 { "protocol = \"http2\"" } else { "" };
    let toml = format!("{QUIET}{}{}", plain_listener(), route_to(up.addr, extra));
    let gw = TestGateway::start(&toml).await;
    let conn = Conn::plain(gw.addr("web"), Proto::H2).await;
    Setup { up, gw, conn }
}

/// A POST of `body`, answered whole.
async fn post(c: &mut Conn, body: Vec<u8>) -> (http::response::Parts, Bytes) {
    let req = c.request(Method::POST, "/echo").body(full(body)).unwrap();
    c.fetch(req).await
}

/// Small and large bodies, both ways, each request after a quiet moment (the one
/// before it ended, so no stream was open): over HTTP/1.1 and HTTP/2 upstreams.
#[tokio::test]
async fn requests_after_quiet_moments_move_bodies_both_ways() {
    for http2 in [false, true] {
        let mut s = setup(http2).await;
        for size in [0, 10, 16 * 1024 + 1, 1 << 20, 3] {
            let sent = pattern(size);
            let (parts, got) = post(&mut s.conn, sent.clone()).await;
            assert_eq!(parts.status, 200, "h2 upstream {http2}, {size} bytes");
            assert_eq!(got.len(), size, "h2 upstream {http2}");
            assert!(
                got[..] == sent[..],
                "h2 upstream {http2}, {size} bytes changed"
            );
        }
    }
}

/// A field the client's HPACK encoder put in the dynamic table on the first request is
/// sent as an index on the next ones: the table's copy must outlive the buffers given
/// back in between.
#[tokio::test]
async fn a_field_indexed_before_a_quiet_moment_is_read_from_the_table_after() {
    for http2 in [false, true] {
        let mut s = setup(http2).await;
        for round in 0..4 {
            let value = if round < 3 {
                "alpha-0123456789"
            } else {
                "beta"
            };
            let req = s
                .conn
                .request(Method::GET, "/")
                .header("x-custom", value)
                .header("user-agent", "quiet-test/1.0 (a value huffman codes)")
                .body(gatehouse_test_support::upstream::empty())
                .unwrap();
            let (parts, _) = s.conn.fetch(req).await;
            assert_eq!(parts.status, 200, "round {round}");
            assert_eq!(parts.headers["x-custom-seen"], value, "round {round}");
            assert!(s.up.last().headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("quiet-test/1.0"));
        }
    }
}

/// A header block larger than a frame comes in HEADERS and CONTINUATION frames, read
/// into buffers taken after the quiet moment; the upstream gets the whole field.
#[tokio::test]
async fn a_header_block_in_continuation_frames_after_a_quiet_moment() {
    let mut s = setup(false).await;
    for len in [40_000, 20_000] {
        let req = s
            .conn
            .request(Method::GET, "/")
            .header("x-big", "b".repeat(len))
            .body(gatehouse_test_support::upstream::empty())
            .unwrap();
        let (parts, _) = s.conn.fetch(req).await;
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-big-len"], len.to_string().as_str());
    }
}

/// A client that writes a few bytes at a time: the gateway reads frames in pieces, and
/// a piece read while no stream is open (the head of the next request) must stay in the
/// read buffer when the quiet connection gives its buffers back.
#[tokio::test]
async fn frames_read_in_pieces_are_kept_over_quiet_moments() {
    let s = setup(false).await;
    let gw = &s.gw;
    let tcp = TcpStream::connect(gw.addr("web")).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let authority = gw.addr("web").to_string();
    let trickle = Trickle { tcp, pause: None };
    let mut c = Conn::over(trickle, Proto::H2, "http", authority).await;
    for size in [0, 5, 300] {
        let sent = pattern(size);
        let (parts, got) = post(&mut c, sent.clone()).await;
        assert_eq!(parts.status, 200);
        assert!(got[..] == sent[..], "{size} bytes changed");
    }
}

/// Writes at most 7 bytes at a time (a frame has a 9-byte header) and pauses a
/// millisecond after each write, so that the gateway (on this test's thread) reads
/// frames in pieces, the head of a request among them while no stream is open.
struct Trickle {
    tcp: TcpStream,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let n = buf.len().min(7);
        let written = Pin::new(&mut self.tcp).poll_write(cx, &buf[..n]);
        if written.is_ready() {
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
