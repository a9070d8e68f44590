//! What a client connection's driver reads and its requests write: bytes moved (for the
//! idle check), requests in progress, and the head clock, which times each wait for an
//! HTTP/1 request head (the `header_read` timeout) without a timer per request.
//!
//! hyper's own header-read timeout allocates, registers and drops a timer for every
//! request (callgrind: about 1,000 instructions a request). Here a request only stamps
//! when its response body ended, and the connection's driver keeps one timer that it
//! re-arms when it fires (see `server::drive`).
//!
//! The I/O wrapper also puts Gatehouse's JSON reply in place of hyper's bare one to a
//! head it could not parse (see `bare_reply`), and closes lingering: after its FIN it
//! reads what the client still sends for a while, so that a reply followed by a close
//! is not destroyed by the reset a close with unread bytes would send.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `head_since` before the first bytes of a sniffed connection told its protocol: no
/// head wait runs yet (the idle timeout covers a silent connection).
const NOT_YET: u64 = u64::MAX;
/// `head_since` on HTTP/2, which has no head clock.
const OFF: u64 = u64::MAX - 1;

/// Shared by a connection's I/O wrapper, its requests and its driver.
pub struct ConnState {
    /// Reads and writes that moved bytes.
    activity: AtomicU64,
    /// Requests in the service: a connection waiting on an upstream is not idle.
    busy: AtomicUsize,
    /// Requests whose response body has not ended.
    open: AtomicUsize,
    /// A request switched protocols: the connection is a tunnel now, whose half-close
    /// must pass as it is (no lingering close).
    upgraded: AtomicBool,
    /// The driver is taking the hyper connection down to park it (see `park`): its
    /// shutdown must leave the socket open.
    parking: AtomicBool,
    /// The last write or flush could not finish (the client reads slowly): bytes may
    /// sit in hyper's buffer, so the connection is not idle.
    write_blocked: AtomicBool,
    /// The last request said the client sends nothing after it (see
    /// `edge::client_closes`) and had no body: a close need not linger.
    client_done: AtomicBool,
    /// The open HTTP/1 request's body is still hyper's to read (see [`BodyUnread`]):
    /// the close watch must not read ahead of it.
    body_unread: AtomicBool,
    /// Requests that reached the service, ever.
    served: AtomicU64,
    /// Woken by the first request (a drain waits for it: see `server::drive`).
    first: tokio::sync::Notify,
    /// When the connection last began waiting for a request head, in nanoseconds since
    /// `born`; or `NOT_YET` / `OFF`.
    head_since: AtomicU64,
    born: Instant,
}

/// Where the head clock starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HeadClock {
    /// HTTP/1 only: the wait for the first head starts with the connection.
    FromStart,
    /// HTTP/1 or HTTP/2 by the first bytes: the wait starts at the first byte, and
    /// stops for good if those bytes are the HTTP/2 preface.
    FromFirstByte,
    /// HTTP/2 only.
    Off,
}

impl ConnState {
    pub fn new(clock: HeadClock) -> Arc<ConnState> {
        Arc::new(ConnState::at(clock, Instant::now(), 0))
    }

    fn at(clock: HeadClock, born: Instant, served: u64) -> ConnState {
        let head_since = match clock {
            HeadClock::FromStart => 0,
            HeadClock::FromFirstByte => NOT_YET,
            HeadClock::Off => OFF,
        };
        ConnState {
            activity: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            client_done: AtomicBool::new(false),
            body_unread: AtomicBool::new(false),
            served: AtomicU64::new(served),
            first: tokio::sync::Notify::new(),
            head_since: AtomicU64::new(head_since),
            born,
        }
    }

    /// The state of a parked connection served again (see `park`): it has served
    /// requests, and its wait for the next head began at `head_since`.
    pub fn resumed(head_since: Instant) -> Arc<ConnState> {
        Arc::new(ConnState::at(HeadClock::FromStart, head_since, 1))
    }

    /// When the current wait for a request head began, if one is running.
    pub fn head_since(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Acquire) {
            NOT_YET | OFF => None,
            ns => Some(self.born + Duration::from_nanos(ns)),
        }
    }

    /// Reads and writes so far; unchanged over a period means no byte moved.
    pub fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    /// Whether a request is waiting on the service (an upstream).
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    /// The connection carries HTTP/2: no head wait will ever run.
    pub fn head_clock_off(&self) -> bool {
        self.head_since.load(Ordering::Relaxed) == OFF
    }

    /// When the current wait for a request head must end, if one is running: no
    /// request is in progress and the connection has begun waiting.
    pub fn head_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            NOT_YET | OFF => None,
            ns => Some(self.born + Duration::from_nanos(ns) + limit),
        }
    }

    /// Whether a request has reached the service on this connection.
    pub fn served_any(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0
    }

    /// Resolves once the connection's first request has reached the service.
    pub async fn first_request(&self) {
        if !self.served_any() {
            self.first.notified().await;
        }
    }

    /// Whether the connection may be parked: it has served a request, none is open, no
    /// write is waiting on the client, and it has not switched protocols.
    pub fn parkable(&self) -> bool {
        self.served_any()
            && self.open.load(Ordering::Acquire) == 0
            && !self.write_blocked.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
    }

    /// A request said it is the client's last and carries no body (see `Activity`'s
    /// close).
    pub fn client_done(&self) {
        self.client_done.store(true, Ordering::Relaxed);
    }

    /// Whether an HTTP/1 request waits on its answer (or streams it) with nothing of
    /// it left for hyper to read, on a connection that has not switched protocols:
    /// then the close watch looks for the client leaving (see `Rewind::watch`).
    pub fn awaits_answer(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
            && !self.body_unread.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
    }

    /// Marks (or unmarks) the hyper connection's shutdown as a parking one.
    pub fn set_parking(&self, on: bool) {
        self.parking.store(on, Ordering::Relaxed);
    }

    /// The connection speaks HTTP/2: no head wait will ever run.
    pub fn stop_head_clock(&self) {
        self.head_since.store(OFF, Ordering::Release);
    }

    /// The connection speaks HTTP/1: the wait for its first head runs from now.
    pub fn head_wait_begins(&self) {
        self.start_head_wait();
    }

    /// Starts a wait for the next head, now, unless the clock is off.
    fn start_head_wait(&self) {
        let since = self.head_since.load(Ordering::Relaxed);
        if since != OFF {
            let ns = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(OFF - 1);
            self.head_since.store(ns.min(OFF - 1), Ordering::Release);
        }
    }
}

/// A request from its head to the end of its response body. Made when the service is
/// called; once answered, the response body holds its [`Answered`] part (see
/// `ResponseBody::hold`) until it ends.
pub struct Open {
    /// Taken by [`Open::answered`].
    state: Option<Arc<ConnState>>,
    busy: bool,
}

/// An answered request's mark, held by its response body until the body ends: one
/// pointer, as the body is part of every response moved on its way to the client.
pub struct Answered(Arc<ConnState>);

impl Open {
    pub fn enter(state: &Arc<ConnState>) -> Open {
        if state.served.fetch_add(1, Ordering::Relaxed) == 0 {
            state.first.notify_one();
        }
        state.busy.fetch_add(1, Ordering::Relaxed);
        state.open.fetch_add(1, Ordering::AcqRel);
        Open {
            state: Some(state.clone()),
            busy: true,
        }
    }

    /// The request's response switched protocols (see `ConnState::upgraded`).
    pub fn upgraded(&self) {
        if let Some(s) = &self.state {
            s.upgraded.store(true, Ordering::Relaxed);
        }
    }

    /// The service answered: the request no longer waits on an upstream, though its
    /// response body may still stream, and stays open as long as the mark returned.
    pub fn answered(mut self) -> Option<Answered> {
        self.not_busy();
        self.state.take().map(Answered)
    }

    fn not_busy(&mut self) {
        if let Some(s) = self.state.as_ref().filter(|_| self.busy) {
            s.busy.fetch_sub(1, Ordering::Relaxed);
            self.busy = false;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.not_busy();
        drop(self.state.take().map(Answered));
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.start_head_wait();
        }
    }
}

/// An HTTP/1 request's body while hyper still reads it: held by the body, let go when
/// the body ends or is dropped (hyper then drains what is left or stops reading).
pub struct BodyUnread(Arc<ConnState>);

impl BodyUnread {
    pub fn new(state: &Arc<ConnState>) -> BodyUnread {
        state.body_unread.store(true, Ordering::Relaxed);
        BodyUnread(state.clone())
    }
}

impl Drop for BodyUnread {
    fn drop(&mut self) {
        self.0.body_unread.store(false, Ordering::Relaxed);
    }
}

/// The connection's I/O, counting reads and writes for the idle check.
pub struct Activity<I> {
    inner: I,
    state: Arc<ConnState>,
    /// The JSON reply being written in place of hyper's bare one, and how much of it
    /// is out (see `bare_reply`).
    swapped: Option<(Vec<u8>, usize)>,
    /// The lingering close's deadline, once the FIN is out.
    linger: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
    /// This side's copy of `ConnState::write_blocked`, so that only a change is stored.
    write_blocked: bool,
    /// A read found the client's end of stream.
    eof: bool,
}

/// How long a close lingers, reading and dropping what the client still sends, and
/// how much it reads at most.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

impl<I> Activity<I> {
    pub fn new(inner: I, state: Arc<ConnState>) -> Activity<I> {
        Activity {
            inner,
            state,
            swapped: None,
            linger: None,
            write_blocked: false,
            eof: false,
        }
    }

    /// The stream, for parking (see `park`).
    pub fn into_inner(self) -> I {
        self.inner
    }

    fn count(&self) {
        self.state.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes whether a write or flush left bytes waiting on the client.
    fn note_write<T>(&mut self, r: &Poll<T>) {
        if r.is_pending() != self.write_blocked {
            self.write_blocked = r.is_pending();
            self.state
                .write_blocked
                .store(self.write_blocked, Ordering::Relaxed);
        }
    }
}

impl<I: AsyncRead + Unpin> Activity<I> {
    /// Reads and drops what the client sends after our FIN, until it closes too, the
    /// linger time runs out or too much came.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (deadline, read) = self
            .linger
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER)), 0));
        // Not zeroed: a zeroed 4 KiB was most of a close's user-space cost.
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            if std::future::Future::poll(deadline.as_mut(), cx).is_ready() || *read > LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => *read += rb.filled().len(),
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<I: AsyncRead + Unpin> Activity<I> {
    /// After our FIN: whether the client is known to send nothing more, so the close
    /// need not linger. It has closed its side, or its last request said it was the
    /// last (and had no body), and no byte has come since. This is NGINX's rule too:
    /// it lingers only when the client may still be sending. Bytes that did come are
    /// dropped, as the linger would, and the linger runs.
    fn client_finished(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.eof && !self.state.client_done.load(Ordering::Relaxed) {
            return false;
        }
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        let mut rb = ReadBuf::uninit(&mut scratch);
        // Pending costs no syscall when the last read drained the socket.
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                let late = rb.filled().len();
                self.linger = Some((Box::pin(tokio::time::sleep(LINGER)), late));
                false
            }
            _ => true,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Activity<I> {
    /// Writes Gatehouse's JSON reply in place of `buf` when `buf` is hyper's bare reply
    /// to a head it could not parse (no request is open then); `None` otherwise. hyper
    /// is told `buf` went out once the whole replacement has.
    fn swap_bare(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if self.swapped.is_none() {
            if buf.first() != Some(&b'H') || self.state.open.load(Ordering::Acquire) > 0 {
                return None;
            }
            self.swapped = Some((super::bare_reply::replace(buf)?, 0));
        }
        let (out, pos) = self.swapped.as_mut()?;
        while *pos < out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &out[*pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => *pos += n,
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Pending => return Some(Poll::Pending),
            }
        }
        self.swapped = None;
        self.count();
        Some(Poll::Ready(Ok(buf.len())))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Activity<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let room = buf.remaining();
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.count();
            if matches!(r, Poll::Ready(Ok(()))) && room > 0 && buf.filled().len() == before {
                self.eof = true;
            }
        }
        r
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Activity<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(r) = self.swap_bare(cx, buf) {
            return r;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.count();
        }
        self.note_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (full.next(), full.next()) {
            if let Some(r) = self.swap_bare(cx, only) {
                return r;
            }
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.count();
        }
        self.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(&r);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.state.parking.load(Ordering::Relaxed) {
            // The hyper connection is being parked, not closed: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        if self.linger.is_none() {
            std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            if self.state.upgraded.load(Ordering::Relaxed) || self.client_finished(cx) {
                return Poll::Ready(Ok(()));
            }
        }
        self.poll_linger(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sniffed_connection_waits_for_no_head_until_its_protocol_is_known() {
        let limit = Duration::from_secs(2);
        let s = ConnState::new(HeadClock::FromFirstByte);
        assert_eq!(s.head_deadline(limit), None, "silent");
        s.head_wait_begins();
        assert!(s.head_deadline(limit).is_some());
        let h2 = ConnState::new(HeadClock::FromFirstByte);
        h2.stop_head_clock();
        assert!(h2.head_clock_off() && h2.head_deadline(limit).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_waiting_on_the_client_keeps_the_connection_from_parking() {
        use tokio::io::AsyncWriteExt;
        let s = ConnState::new(HeadClock::FromStart);
        drop(Open::enter(&s));
        assert!(s.parkable(), "served, nothing open");
        let (mut client, server) = tokio::io::duplex(16);
        let mut io = Activity::new(server, s.clone());
        let stuck = tokio::time::timeout(Duration::from_millis(50), io.write_all(&[0; 64])).await;
        assert!(stuck.is_err(), "the client reads nothing");
        assert!(!s.parkable(), "bytes wait on the client");
        let mut sink = [0u8; 16];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut sink)
            .await
            .unwrap();
        io.write_all(&[0; 8]).await.unwrap();
        assert!(s.parkable(), "written out");
    }

    #[test]
    fn a_request_pauses_the_clock_until_its_body_ends() {
        let limit = Duration::from_secs(5);
        let s = ConnState::new(HeadClock::FromStart);
        assert_eq!(s.head_deadline(limit), Some(s.born + limit));
        let open = Open::enter(&s);
        assert!(s.busy() && s.head_deadline(limit).is_none());
        let answered = open.answered();
        assert!(!s.busy() && s.head_deadline(limit).is_none());
        drop(answered);
        assert!(s.head_deadline(limit).is_some());
        // A request dropped unanswered (its client left) ends as well.
        let unanswered = Open::enter(&s);
        assert!(s.busy() && s.head_deadline(limit).is_none());
        drop(unanswered);
        assert!(!s.busy() && s.head_deadline(limit).is_some());
        let off = ConnState::new(HeadClock::Off);
        drop(Open::enter(&off));
        assert!(off.head_clock_off() && off.head_deadline(limit).is_none());
    }
}
