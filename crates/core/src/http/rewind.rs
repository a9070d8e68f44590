//! A client connection's I/O with bytes read ahead of its protocol's parser, read
//! again first, as if nothing had been taken: the first bytes read to choose the
//! protocol (see `server::sniff`); on a parked HTTP/1 connection served again (see
//! `park`), the part of a request head hyper had read before the parking; and what the
//! close watch read while a request waited on its answer.
//!
//! The close watch: hyper's HTTP/1 server runs with `half_close` on, so it reads
//! nothing while a request waits on its answer. Left off, hyper reads then to notice a
//! client that leaves, and that read takes a new 8 KiB buffer for every request, since
//! the request's fields still share the old one (two slow-path allocator calls a
//! request; with the watch in its place, 330 instructions fewer a keep-alive request,
//! `bench/callgrind.sh`). The watch reads instead, at hyper's flush, which it calls
//! each time it polls the connection: a read that finds nothing costs no syscall once
//! the socket is drained, and leaves the task to be woken by the client's next bytes or
//! close. The client's end of stream then fails the flush, and hyper drops the request,
//! cancelling its upstream exchange, as it did itself (and as NGINX does with
//! `proxy_ignore_client_abort off`). Bytes that came instead (a pipelined request) are
//! kept here and the watch stops, as hyper's own read did.

use super::conn_state::ConnState;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Rewind<I> {
    inner: I,
    /// Bytes to be read before the socket is read again.
    rest: Bytes,
    /// The close watch's view of the connection (HTTP/1 only).
    watch: Option<Arc<ConnState>>,
    /// The close watch read the client's end of stream: reads find it after `rest`.
    closed: bool,
}

/// What the close watch reads at most at a time; more waits in the socket.
const WATCH_READ: usize = 64;

impl<I> Rewind<I> {
    /// `inner` with `first` to be read again before it.
    pub fn new(inner: I, first: Bytes) -> Rewind<I> {
        Rewind {
            inner,
            rest: first,
            watch: None,
            closed: false,
        }
    }

    /// With the close watch on, for hyper's HTTP/1 server (see the module docs).
    pub fn watching(mut self, state: Arc<ConnState>) -> Rewind<I> {
        self.watch = Some(state);
        self
    }

    /// The stream, and the bytes not read again yet.
    pub fn into_parts(self) -> (I, Bytes) {
        (self.inner, self.rest)
    }
}

impl<I: AsyncRead + Unpin> Rewind<I> {
    /// The close watch (see the module docs): reads ahead when a request waits on its
    /// answer and nothing read ahead is waiting. `Err` when the client has left.
    fn watch(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(state) = &self.watch else {
            return Ok(());
        };
        if self.closed || !self.rest.is_empty() || !state.awaits_answer() {
            return Ok(());
        }
        let mut ahead = [std::mem::MaybeUninit::<u8>::uninit(); WATCH_READ];
        let mut rb = ReadBuf::uninit(&mut ahead);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                self.closed = true;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed its connection before its answer",
                ))
            }
            Poll::Ready(Ok(())) => {
                self.rest = Bytes::copy_from_slice(rb.filled());
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(buf.remaining());
            buf.put_slice(&self.rest[..n]);
            self.rest.advance(n);
            if self.rest.is_empty() {
                // An empty view still holds its allocation, for the connection's life.
                self.rest = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.watch(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn_state::{BodyUnread, HeadClock, Open};
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A waker that notes it was woken.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// One flush, polled once with `woken`'s waker.
    fn flush_once(io: &mut Rewind<DuplexStream>, woken: &Arc<Woken>) -> Poll<io::Result<()>> {
        let waker = std::task::Waker::from(woken.clone());
        Pin::new(io).poll_flush(&mut Context::from_waker(&waker))
    }

    /// A watched connection (the server's side) and its client.
    fn watched() -> (Rewind<DuplexStream>, DuplexStream, Arc<ConnState>) {
        let (client, server) = tokio::io::duplex(1024);
        let state = ConnState::new(HeadClock::FromStart);
        (
            Rewind::new(server, Bytes::new()).watching(state.clone()),
            client,
            state,
        )
    }

    #[tokio::test]
    async fn a_client_leaving_while_its_request_waits_fails_the_flush() {
        let (mut io, client, state) = watched();
        let _open = Open::enter(&state);
        let woken = Arc::new(Woken::default());
        assert!(matches!(flush_once(&mut io, &woken), Poll::Ready(Ok(()))));
        assert!(!woken.0.load(Ordering::SeqCst));
        drop(client);
        assert!(
            woken.0.load(Ordering::SeqCst),
            "the close wakes the connection"
        );
        let err = io.flush().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut rest = Vec::new();
        assert_eq!(
            io.read_to_end(&mut rest).await.unwrap(),
            0,
            "reads find the end"
        );
    }

    #[tokio::test]
    async fn bytes_read_ahead_come_first_and_stop_the_watch() {
        let (mut io, mut client, state) = watched();
        let _open = Open::enter(&state);
        let next = [
            b"GET /next HTTP/1.1\r\nHost: a\r\nX-Pad: ".as_slice(),
            &[b'p'; 100],
            b"\r\n\r\n",
        ]
        .concat();
        client.write_all(&next).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.rest.len(), WATCH_READ, "the watch read ahead");
        drop(client);
        // The close behind them is the parser's to find, as hyper's own read left it.
        io.flush().await.unwrap();
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, next);
    }

    #[tokio::test]
    async fn no_watch_between_requests_while_a_body_is_unread_or_after_an_upgrade() {
        let (mut io, client, state) = watched();
        drop(client);
        io.flush().await.expect("no request is open");
        let open = Open::enter(&state);
        let unread = BodyUnread::new(&state);
        io.flush().await.expect("the body is hyper's to read");
        drop(unread);
        open.upgraded();
        io.flush().await.expect("a tunnel's half-close passes");
        let (mut io, client, state) = watched();
        let _open = Open::enter(&state);
        drop(client);
        assert!(io.flush().await.is_err(), "watched once the body is read");
    }

    #[tokio::test]
    async fn the_first_bytes_come_again_before_the_rest() {
        let rest: &[u8] = b" / HTTP/1.1\r\n";
        let mut r = Rewind::new(rest, Bytes::from_static(b"GET"));
        let mut one = [0u8; 2];
        r.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"GE");
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"T / HTTP/1.1\r\n");
    }
}
