//! Serving one client connection: hyper's HTTP/1.1 server (upgrades enabled) or
//! Gatehouse's HTTP/2 server on h2 ([`super::h2`]), chosen by ALPN on TLS listeners and
//! by the first bytes on plain ones (h2c with prior knowledge). Applies the header-read
//! (slowloris) timeout, header limits and the idle timeout, and shuts the connection
//! down gracefully when its listener drains.

use super::conn_state::{Activity, ConnState, HeadClock, Open};
use super::h2::{self, H2Conn};
use super::rewind::{self, Rewind};
use crate::body::{ClientBody, ResponseBody};
use crate::drain::Watch;
use crate::proxy::{self, ConnCtx};
use crate::runtime::ListenerRt;
use crate::wake_gate::Gated;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

/// How the connection's protocol is chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain TCP: HTTP/1.1, or HTTP/2 if the client opens with the preface.
    Sniff,
    Http1,
    Http2,
}

/// Serves a connection until it closes, times out idle, or drains.
pub async fn serve<I>(
    io: I,
    ctx: Arc<ConnCtx>,
    l: &ListenerRt,
    proto: Proto,
    tls: bool,
    mut watch: Watch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let proto = match proto {
        Proto::Sniff if !l.spec.http2 => Proto::Http1,
        p => p,
    };
    let clock = match proto {
        Proto::Sniff => HeadClock::FromFirstByte,
        Proto::Http1 => HeadClock::FromStart,
        Proto::Http2 => HeadClock::Off,
    };
    let state = ConnState::new(clock);
    let mut io = Activity::new(io, state.clone());
    let limits = Limits {
        idle: l.spec.idle_timeout,
        header_read: l.spec.header_read_timeout,
    };
    let (http2, first) = match proto {
        Proto::Http1 => (false, Sniffed::default()),
        Proto::Http2 | Proto::Sniff => {
            // A drain does not drop a connection whose first bytes may be on the way:
            // it shortens their wait to `header_read`.
            let sniffed = {
                let sniffing = sniff(&mut io, proto == Proto::Http2);
                tokio::pin!(sniffing);
                tokio::select! {
                    r = tokio::time::timeout(limits.idle, &mut sniffing) => r,
                    _ = watch.signaled() => {
                        tokio::time::timeout(limits.header_read, &mut sniffing).await
                    }
                }
            };
            let first = match sniffed {
                Ok(Some(first)) => first,
                // Silent past the timeout, or closed before a byte.
                Ok(None) | Err(_) => return,
            };
            if first.bad_preface {
                h2::refuse(&mut io).await;
                return;
            }
            (first.http2, first)
        }
    };
    let io = Rewind::new(io, &first.bytes[..first.len]);
    let st = state.clone();
    if http2 {
        state.stop_head_clock();
        let settings = h2::Settings {
            max_concurrent_streams: 256,
            max_header_list_size: u32::try_from(l.spec.limits.max_header_size).unwrap_or(u32::MAX),
        };
        let svc = move |req| counted(Open::enter(&st), proxy::handle(req, ctx.clone()));
        drive(H2Conn::new(io, settings, svc), &state, limits, watch).await
    } else {
        state.head_wait_begins();
        let svc = service_fn(move |req: Request<Incoming>| {
            counted(
                Open::enter(&st),
                proxy::handle(req.map(ClientBody::Http1), ctx.clone()),
            )
        });
        let conn = http1_builder(l, tls)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        drive(conn, &state, limits, watch).await
    }
}

/// The first bytes of a connection, read to choose its protocol.
#[derive(Default)]
struct Sniffed {
    bytes: [u8; rewind::MAX],
    len: usize,
    http2: bool,
    /// They began as the HTTP/2 preface does but were not it.
    bad_preface: bool,
}

/// Reads a connection's first bytes until they are the whole HTTP/2 preface or not it.
/// On an HTTP/2-only connection (ALPN `h2`) anything else is a bad preface; on a
/// plain one it is HTTP/1, unless the bytes went on as the preface past its request
/// line, which no HTTP/1 request does. `None` when the client closes first.
async fn sniff<I: AsyncRead + Unpin>(io: &mut I, h2_only: bool) -> Option<Sniffed> {
    /// `PRI * HTTP/2.0\r\n\r\n`: an HTTP/1 head cannot go on past this.
    const PAST_REQUEST_LINE: usize = 18;
    let mut s = Sniffed::default();
    loop {
        let n = io.read(&mut s.bytes[s.len..]).await.ok()?;
        if n == 0 {
            return None;
        }
        s.len += n;
        let differs = s.bytes[..s.len]
            .iter()
            .zip(h2::PREFACE)
            .position(|(a, b)| a != b);
        if let Some(at) = differs {
            s.bad_preface = h2_only || at >= PAST_REQUEST_LINE;
            return Some(s);
        }
        if s.len == h2::PREFACE.len() {
            s.http2 = true;
            return Some(s);
        }
    }
}

/// The connection timeouts the driver enforces.
struct Limits {
    idle: Duration,
    header_read: Duration,
}

/// A connection the driver can wind down: stop taking requests, finish those open.
trait Graceful {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, F, Fut> Graceful for H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<ClientBody>) -> Fut + Unpin,
    Fut: Future<Output = Result<http::Response<ResponseBody>, Infallible>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown();
    }
}

/// Runs a connection to its end: closes it when idle (no byte either way for the idle
/// timeout, checked in quarters of it, and no request in progress) or when an HTTP/1
/// request head is not in within `header_read`, and shuts it down gracefully when the
/// listener drains.
async fn drive<C, E>(conn: C, state: &ConnState, limits: Limits, mut watch: Watch)
where
    C: Future<Output = Result<(), E>> + Graceful,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let quarter = limits.idle / 4;
    let mut tick = tokio::time::interval_at(Instant::now() + quarter, quarter);
    // One timer for every head wait: when it fires it closes the connection or is
    // re-armed for the wait now running, or a full `header_read` on.
    let head = tokio::time::sleep(limits.header_read);
    tokio::pin!(head);
    let mut head_on = !state.head_clock_off();
    let (mut last, mut still, mut draining, mut waiting_first) = (0, 0, false, false);
    loop {
        // The side branches are gated: the connection's own wake-ups (every read and
        // write) do not poll them (see `wake_gate`).
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = Gated::new(watch.signaled()), if !draining => {
                draining = true;
                // An HTTP/1 connection that has not had its first request is not idle:
                // the client is sending it. It gets that request served (with a close),
                // within `header_read`; shutting down now would drop it unread.
                waiting_first = head_on && !state.served_any();
                if !waiting_first {
                    conn.as_mut().graceful();
                }
            }
            _ = state.first_request(), if waiting_first => {
                waiting_first = false;
                conn.as_mut().graceful();
            }
            _ = Gated::new(head.as_mut()), if head_on => {
                let now = Instant::now();
                match state.head_deadline(limits.header_read) {
                    Some(d) if d <= now => {
                        tracing::debug!("no request head within header_read: closing");
                        return;
                    }
                    Some(d) => head.as_mut().reset(d),
                    None => head.as_mut().reset(now + limits.header_read),
                }
                head_on = !state.head_clock_off();
            }
            _ = Gated::new(tick.tick()) => {
                let now = state.activity();
                still = if now == last && !state.busy() { still + 1 } else { 0 };
                last = now;
                if still >= 4 {
                    tracing::debug!("closing idle client connection");
                    return;
                }
            }
        }
    }
}

fn http1_builder(l: &ListenerRt, tls: bool) -> http1::Builder {
    let limits = &l.spec.limits;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // `drive` enforces header_read with one timer per connection (see conn_state).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_size.max(8192))
        .max_headers(limits.max_headers)
        // Behind TLS one flattened write is cheaper than writev (PERFORMANCE.md).
        .writev(!tls);
    b
}

/// Runs a request's future with its [`Open`] mark, which the response body then holds
/// until it ends.
async fn counted<F>(mut open: Open, fut: F) -> Result<http::Response<ResponseBody>, Infallible>
where
    F: Future<Output = Result<http::Response<ResponseBody>, Infallible>>,
{
    let r = fut.await;
    open.answered();
    r.map(|mut resp| {
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            open.upgraded();
        }
        resp.body_mut().hold(open);
        resp
    })
}
