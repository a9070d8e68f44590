//! Serving one client connection with hyper-util's automatic HTTP/1.1 + HTTP/2 server:
//! h2c with prior knowledge on plain listeners, ALPN on TLS ones, upgrades enabled.
//! Applies the header-read (slowloris) timeout, header limits and the idle timeout, and
//! shuts the connection down gracefully when its listener drains.

use crate::body::ResponseBody;
use crate::drain::Watch;
use crate::proxy::{self, ConnCtx};
use crate::runtime::ListenerRt;
use crate::wake_gate::Gated;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Activity {
        inner: io,
        count: activity.clone(),
    });
    let builder = builder(l, proto, tls);
    // Requests being handled: a connection waiting on a slow upstream is not idle.
    let busy = Arc::new(AtomicUsize::new(0));
    let in_svc = busy.clone();
    let idle = Idle {
        quarter: l.spec.idle_timeout / 4,
        activity,
        busy,
    };
    if proto == Proto::Http2 {
        // HTTP/2 moves each request's future into a task of its own: boxed, the move
        // is a pointer's, not the whole future's (callgrind: ~3,000 instructions a
        // request). HTTP/1 keeps the future in place, where a box would only add an
        // allocation.
        let svc = service_fn(move |req| {
            counted(
                Busy::enter(&in_svc),
                Box::pin(proxy::handle(req, ctx.clone())),
            )
        });
        drive(builder.serve_connection_with_upgrades(io, svc), idle, watch).await
    } else {
        let svc =
            service_fn(move |req| counted(Busy::enter(&in_svc), proxy::handle(req, ctx.clone())));
        drive(builder.serve_connection_with_upgrades(io, svc), idle, watch).await
    }
}

/// What the idle check reads: bytes moved, requests in progress, and its period.
struct Idle {
    quarter: std::time::Duration,
    activity: Arc<AtomicU64>,
    busy: Arc<AtomicUsize>,
}

/// Runs a connection to its end: closes it when idle (no byte either way for the idle
/// timeout, checked in quarters of it, and no request in progress), and shuts it down
/// gracefully when the listener drains.
async fn drive<I, S>(
    conn: auto::UpgradeableConnection<'_, I, S, TokioExecutor>,
    idle: Idle,
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
    tokio::pin!(conn);
    let quarter = idle.quarter;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + quarter, quarter);
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
            _ = Gated::new(tick.tick()) => {
                let now = idle.activity.load(Ordering::Relaxed);
                let waiting = idle.busy.load(Ordering::Relaxed) > 0;
                still = if now == last && !waiting { still + 1 } else { 0 };
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
        .header_read_timeout(l.spec.header_read_timeout)
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

/// Runs a request's future with its [`Busy`] mark held until it completes.
async fn counted<F: std::future::Future>(busy: Busy, fut: F) -> F::Output {
    let r = fut.await;
    drop(busy);
    r
}

/// Counts a request as being handled until dropped.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::Relaxed);
        Busy(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts reads and writes so the idle check can see whether the connection moved.
struct Activity<I> {
    inner: I,
    count: Arc<AtomicU64>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Activity<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Activity<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
