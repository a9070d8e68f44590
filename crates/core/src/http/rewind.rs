//! A client connection's I/O after its first bytes were read to choose the protocol
//! (see `server::sniff`): those bytes are read again first, by hyper or h2, which parse
//! them as if nothing had been taken. A parked HTTP/1 connection (see `park`) served
//! again reads here first the part of a request head hyper had read before the parking.

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

    /// The stream, and the bytes not read again yet.
    pub fn into_parts(self) -> (I, Bytes) {
        (self.inner, self.rest)
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
}
