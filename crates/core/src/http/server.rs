//! Serving one client connection with hyper-util's automatic HTTP/1.1 + HTTP/2 server:
//! h2c with prior knowledge on plain listeners, ALPN on TLS ones, upgrades enabled.
//! Applies the header-read (slowloris) timeout, header limits and the idle timeout, and
//! shuts the connection down gracefully when its listener drains.

use crate::drain::Watch;
use crate::proxy::{self, ConnCtx};
use crate::runtime::ListenerRt;
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
    mut watch: Watch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(0));
    let io = Activity {
        inner: io,
        count: activity.clone(),
    };
    let builder = builder(l, proto, tls);
    // Requests being handled: a connection waiting on a slow upstream is not idle.
    let busy = Arc::new(AtomicUsize::new(0));
    let in_svc = busy.clone();
    let svc = service_fn(move |req| {
        let busy = Busy::enter(&in_svc);
        let ctx = ctx.clone();
        async move {
            let r = proxy::handle(req, ctx).await;
            drop(busy);
            r
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // Idle: no byte either way for `idle_timeout`, checked in quarters of it.
    let quarter = l.spec.idle_timeout / 4;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + quarter, quarter);
    let (mut last, mut still, mut draining) = (0, 0, false);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = watch.signaled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                let now = activity.load(Ordering::Relaxed);
                let waiting = busy.load(Ordering::Relaxed) > 0;
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
