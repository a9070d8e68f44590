//! A client connection's I/O after its first bytes were read to choose the protocol
//! (see `server::sniff`): those bytes are read again first, by hyper or h2, which parse
//! them as if nothing had been taken. A parked HTTP/1 connection (see `park`) also puts
//! back here the part of a request head hyper had read when it was taken down.

use super::park::ReadReady;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Rewind<I> {
    inner: I,
    /// Bytes to be read before the socket is read again.
    rest: Bytes,
}

impl<I> Rewind<I> {
    /// `inner` with `first` to be read again before it.
    pub fn new(inner: I, first: Bytes) -> Rewind<I> {
        Rewind { inner, rest: first }
    }

    /// Puts `bytes` back in front of what is still to be read.
    pub fn put_back(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut all = Vec::with_capacity(bytes.len() + self.rest.len());
        all.extend_from_slice(bytes);
        all.extend_from_slice(&self.rest);
        self.rest = Bytes::from(all);
    }
}

/// Bytes put back were read before: only new ones on the socket make it ready.
impl<I: ReadReady> ReadReady for Rewind<I> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
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
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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

    #[tokio::test]
    async fn bytes_put_back_come_before_the_unread_rest() {
        let mut r = Rewind::new(&b"\r\n\r\n"[..], Bytes::from_static(b"GET / HTTP/1.1"));
        let mut one = [0u8; 4];
        r.read_exact(&mut one).await.unwrap();
        r.put_back(b">>");
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b">>/ HTTP/1.1\r\n\r\n");
    }
}
