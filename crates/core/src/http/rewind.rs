//! A client connection's I/O after its first bytes were read to choose the protocol
//! (see `server::sniff`): those bytes are read again first, by hyper or h2, which parse
//! them as if nothing had been taken. Held inline, so a connection costs no allocation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes sniffing reads: the HTTP/2 connection preface.
pub const MAX: usize = 24;

pub struct Rewind<I> {
    inner: I,
    first: [u8; MAX],
    /// The part of `first` not yet read again.
    at: u8,
    len: u8,
}

impl<I> Rewind<I> {
    /// `inner` with `first` (at most [`MAX`] bytes) to be read again before it.
    pub fn new(inner: I, first: &[u8]) -> Rewind<I> {
        let n = first.len().min(MAX);
        let mut buf = [0u8; MAX];
        buf[..n].copy_from_slice(&first[..n]);
        Rewind {
            inner,
            first: buf,
            at: 0,
            len: n as u8,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.len {
            let (at, len) = (usize::from(self.at), usize::from(self.len));
            let n = (len - at).min(buf.remaining());
            buf.put_slice(&self.first[at..at + n]);
            self.at += n as u8;
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
        let mut r = Rewind::new(rest, b"GET");
        let mut one = [0u8; 2];
        r.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"GE");
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"T / HTTP/1.1\r\n");
    }
}
