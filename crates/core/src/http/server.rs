//! Serving one client connection with hyper-util's automatic HTTP/1.1 + HTTP/2 server:
//! h2c with prior knowledge on plain listeners, ALPN on TLS ones, upgrades enabled.
//! Applies the header-read (slowloris) timeout, header limits and the idle timeout, and
//! shuts the connection down gracefully when its listener drains.

use super::conn_state::{Activity, ConnState, HeadClock, Open};
use crate::body::ResponseBody;
use crate::drain::Watch;
use crate::proxy::{self, ConnCtx};
use crate::runtime::ListenerRt;
use crate::wake_gate::Gated;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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
    watch: Watch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = match proto {
        Proto::Sniff if l.spec.http2 => HeadClock::FromFirstByte,
        Proto::Sniff | Proto::Http1 => HeadClock::FromStart,
        Proto::Http2 => HeadClock::Off,
    };
    let state = ConnState::new(clock);
    let io = TokioIo::new(Activity::new(io, state.clone()));
    let builder = builder(l, proto, tls);
    let limits = Limits {
        idle: l.spec.idle_timeout,
        header_read: l.spec.header_read_timeout,
    };
    let st = state.clone();
    if proto == Proto::Http2 {
        // HTTP/2 moves each request's future into a task of its own: boxed, the move
        // is a pointer's, not the whole future's (callgrind: ~3,000 instructions a
        // request). HTTP/1 keeps the future in place, where a box would only add an
        // allocation.
        let svc = service_fn(move |req| {
            counted(Open::enter(&st), Box::pin(proxy::handle(req, ctx.clone())))
        });
        drive(&builder, io, svc, &state, limits, watch).await
    } else {
        let svc = service_fn(move |req| counted(Open::enter(&st), proxy::handle(req, ctx.clone())));
        drive(&builder, io, svc, &state, limits, watch).await
    }
}

/// The connection timeouts the driver enforces.
struct Limits {
    idle: Duration,
    header_read: Duration,
}

/// Runs a connection to its end: closes it when idle (no byte either way for the idle
/// timeout, checked in quarters of it, and no request in progress) or when an HTTP/1
/// request head is not in within `header_read`, and shuts it down gracefully when the
/// listener drains.
async fn drive<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    state: &ConnState,
    limits: Limits,
    mut watch: Watch,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<ResponseBody>,
            Error = std::convert::Infallible,
        > + hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    <S as hyper::service::Service<http::Request<Incoming>>>::Future: Send + 'static,
    <S as hyper::service::HttpService<Incoming>>::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let quarter = limits.idle / 4;
    let mut tick = tokio::time::interval_at(Instant::now() + quarter, quarter);
    // One timer for every head wait: when it fires it closes the connection or is
    // re-armed for the wait now running, or a full `header_read` on.
    let head = tokio::time::sleep(limits.header_read);
    tokio::pin!(head);
    let mut head_on = !state.head_clock_off();
    let (mut last, mut still, mut draining) = (0, 0, false);
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
                conn.as_mut().graceful_shutdown();
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

fn builder(l: &ListenerRt, proto: Proto, tls: bool) -> auto::Builder<TokioExecutor> {
    let limits = &l.spec.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // `drive` enforces header_read with one timer per connection (see conn_state).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_size.max(8192))
        .max_headers(limits.max_headers)
        // Behind TLS one flattened write is cheaper than writev (PERFORMANCE.md).
        .writev(!tls);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    match proto {
        Proto::Sniff if l.spec.http2 => b,
        Proto::Sniff | Proto::Http1 => b.http1_only(),
        Proto::Http2 => b.http2_only(),
    }
}

/// Runs a request's future with its [`Open`] mark, which the response body then holds
/// until it ends.
async fn counted<F>(mut open: Open, fut: F) -> Result<http::Response<ResponseBody>, Infallible>
where
    F: std::future::Future<Output = Result<http::Response<ResponseBody>, Infallible>>,
{
    let r = fut.await;
    open.answered();
    r.map(|mut resp| {
        resp.body_mut().hold(open);
        resp
    })
}
