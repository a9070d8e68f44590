//! Parking an idle HTTP/1 connection. Once a kept-alive connection has been silent for
//! a tick of its driver (a second at most) with no request open, its hyper connection
//! (read and write buffers, the request slot) is taken down and only the socket (with
//! its TLS state) is kept, waiting to become readable; the next request's first bytes
//! build a fresh hyper connection on it. As NGINX frees a kept-alive connection's
//! buffers, an idle connection then costs its socket, its TLS state and a small task,
//! where a live hyper connection holds about 20 KB.
//!
//! The take-down is hyper's own graceful shutdown of an idle connection, with the
//! socket's shutdown skipped (see `ConnState::parking`), and `into_parts`, which hands
//! back the socket and any bytes of the next head already read.

use crate::drain::Watch;
use crate::proxy_protocol::ClientStream;
use std::io;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A client connection's I/O that can say when it has something to read, without a
/// buffer to read into.
pub trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for ClientStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.holds_bytes() {
            return Poll::Ready(Ok(()));
        }
        self.get_ref().poll_read_ready(cx)
    }
}

/// TLS: a parked connection's session holds no plaintext (hyper's last read found
/// none), so the next record's arrival on the socket is the wake-up.
impl<I: ReadReady> ReadReady for tokio_rustls::server::TlsStream<I> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }
}

impl<I: ReadReady + ?Sized> ReadReady for Box<I> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

/// How a parked connection's wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Bytes (or the client's close) arrived: serve them.
    Readable,
    /// A timeout ran out, the listener drains or the socket failed: close.
    Close,
}

/// Waits, holding only `io`, until it is readable, `until` passes or the drain begins.
pub async fn wait<I: ReadReady>(io: &I, until: Instant, watch: &mut Watch) -> Wake {
    tokio::select! {
        r = std::future::poll_fn(|cx| io.poll_read_ready(cx)) => match r {
            Ok(()) => Wake::Readable,
            Err(_) => Wake::Close,
        },
        _ = tokio::time::sleep_until(until) => Wake::Close,
        _ = watch.signaled() => Wake::Close,
    }
}
