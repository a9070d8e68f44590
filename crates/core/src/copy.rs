//! Copying bytes both ways between two connections (upgraded tunnels such as
//! WebSockets, layer-4 sessions) with no buffer held while neither side has anything
//! to say. tokio's `copy_bidirectional` keeps an 8 KiB buffer per direction for a
//! tunnel's whole life: 16 KiB for every idle WebSocket. Here a read borrows the
//! thread's scratch buffer for one poll only; bytes the other side cannot take at once
//! move into a buffer of their own size, freed once written. A side's end of stream is
//! passed on as a write shutdown while the other direction keeps flowing.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one read takes: a TLS record's worth.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// Copies `a` to `b` and `b` to `a` until both have ended; the byte counts each way.
pub async fn copy_both<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut ab, mut ba) = (OneWay::default(), OneWay::default());
    let (mut ab_done, mut ba_done) = (None, None);
    poll_fn(|cx| {
        if ab_done.is_none() {
            if let Poll::Ready(n) = ab.poll(cx, &mut *a, &mut *b)? {
                ab_done = Some(n);
            }
        }
        if ba_done.is_none() {
            if let Poll::Ready(n) = ba.poll(cx, &mut *b, &mut *a)? {
                ba_done = Some(n);
            }
        }
        match (ab_done, ba_done) {
            (Some(x), Some(y)) => Poll::Ready(Ok((x, y))),
            _ => Poll::Pending,
        }
    })
    .await
}

/// One direction's state: the bytes the writer has not taken yet, if any.
#[derive(Default)]
struct OneWay {
    spill: Vec<u8>,
    at: usize,
    /// Written since the last flush.
    unflushed: bool,
    read_done: bool,
    copied: u64,
}

impl OneWay {
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            ready!(self.poll_spill(cx, w))?;
            if self.read_done {
                ready!(Pin::new(&mut *w).poll_flush(cx))?;
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                return Poll::Ready(Ok(self.copied));
            }
            match self.poll_pass(cx, r, w) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    if self.unflushed {
                        ready!(Pin::new(&mut *w).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes what an earlier pass left over.
    fn poll_spill<W>(&mut self, cx: &mut Context<'_>, w: &mut W) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        while self.at < self.spill.len() {
            let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.spill[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
            self.copied += n as u64;
            self.unflushed = true;
        }
        if !self.spill.is_empty() {
            self.spill = Vec::new();
            self.at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// One read into the scratch buffer and as much of a write as the writer takes
    /// now; the rest is spilled. Pending when there is nothing to read.
    fn poll_pass<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        SCRATCH_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.pass_through(cx, r, w, &mut scratch),
            // Only if a stream's own poll copied (never here): a buffer of its own.
            Err(_) => self.pass_through(cx, r, w, &mut vec![0; SCRATCH]),
        })
    }

    fn pass_through<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        scratch: &mut [u8],
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut rb = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *r).poll_read(cx, &mut rb))?;
        let got = rb.filled();
        if got.is_empty() {
            self.read_done = true;
            return Poll::Ready(Ok(()));
        }
        let mut at = 0;
        while at < got.len() {
            match Pin::new(&mut *w).poll_write(cx, &got[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    at += n;
                    self.copied += n as u64;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if at < got.len() {
            self.spill = got[at..].to_vec();
            self.at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn both_ways_with_a_slow_reader_and_half_closes() {
        // A small duplex makes writes pend, so bytes spill and are written later.
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut upstream) = tokio::io::duplex(64);
        let copier = tokio::spawn(async move { copy_both(&mut a, &mut b).await });
        let up: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let writer = tokio::spawn(async move {
            client.write_all(&up2).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, up, "client to upstream, then the client's FIN");
        upstream.write_all(&down2).await.unwrap();
        upstream.shutdown().await.unwrap();
        assert_eq!(
            writer.await.unwrap(),
            down,
            "the other way after the half close"
        );
        assert_eq!(copier.await.unwrap().unwrap(), (100_000, 50_000));
    }

    #[tokio::test]
    async fn an_idle_pair_holds_no_buffer() {
        let (_client, mut a) = tokio::io::duplex(64);
        let (mut b, _upstream) = tokio::io::duplex(64);
        let mut ab = OneWay::default();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(ab.poll(&mut cx, &mut a, &mut b).is_pending());
        assert_eq!(ab.spill.capacity(), 0);
    }
}
