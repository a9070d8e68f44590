//! One upstream HTTP/1.1 connection driven from the request's own task: the [`Wire`]
//! (socket, read buffer, open-connection mark), [`send`] (the request out, the response
//! head in) and [`H1Body`] (the response body, and the rest of a streamed request body,
//! after which the connection goes back to its pool only when it ended exactly). No
//! task and no channel per connection: that is what hyper's client costs (issue 10).

use super::decode::{self, Decoder, Malformed, Step};
use super::encode::{self, BodyLength, Encoding};
use crate::body::{BodyError, BodyTooLarge, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::http::conn_count::{Closed, ConnCount, OpenGuard};
use crate::upstream::Endpoint;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Room made in the buffer once it has less than [`LOW_WATER`] free: it starts at
/// [`MIN_READ`] (a page: most responses are small, and every connection in the pool
/// keeps its buffer), doubles while reads fill it, up to [`MAX_READ`], and halves
/// again when reads take a small part of it. At 64 KiB the bench's 16 KiB bodies grew
/// every pooled connection's buffer to 32 KiB (peak RSS 16.8 -> 22 MiB) for no fewer
/// reads than 16 KiB gives.
const MIN_READ: u32 = 4 * 1024;
const MAX_READ: u32 = 16 * 1024;
const LOW_WATER: usize = 1024;

/// A socket to an upstream, plain or TLS.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// An upstream HTTP/1.1 connection between requests (in the pool) or during one.
pub struct Wire {
    io: Io,
    /// Bytes read and not yet used; empty whenever the connection is in the pool.
    buf: BytesMut,
    /// The field names of the last response, found again in the next one.
    names: decode::Names,
    /// The response deadline of the request on the connection, kept from one request
    /// to the next: moving a registered timer later is one atomic store, where a timer
    /// per request was a wheel insert and removal (about 1,000 instructions a request).
    /// Deadlines only move later, so it is left as it is between requests; should it
    /// fire while the connection is pooled, it wakes the last task that used it once.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The room the next read asks for (see [`MIN_READ`]).
    read_size: u32,
    counted: OpenGuard,
}

/// No response head came before the deadline (see `exchange::try_deadline`).
#[derive(Debug, thiserror::Error)]
#[error("no response in time")]
pub struct TimedOut;

/// The connection broke before any byte of a response: what a stale pooled connection
/// does when the upstream closed it as the request went out. Only then may an
/// idempotent request be sent again (see `client::broke_before_response`).
#[derive(Debug, thiserror::Error)]
#[error("the upstream closed the connection before responding")]
pub struct NoResponse(#[source] Option<io::Error>);

/// The request body broke its own framing: more or fewer bytes than its Content-Length.
#[derive(Debug, thiserror::Error)]
#[error("the request body does not match its Content-Length")]
pub struct LengthMismatch;

/// The part of a request body still to be written.
struct Sender {
    body: UpstreamBody,
    enc: Encoding,
    /// Bytes of a Content-Length body still owed.
    owed: u64,
    /// Framed bytes not yet written.
    pending: Bytes,
    ended: bool,
}

/// Why writing the request body stopped.
enum SendFailed {
    /// The client's body failed (or went over its limit): the request is broken.
    Body(BodyError),
    /// The socket failed: the upstream may still have answered.
    Io(io::Error),
}

/// A response body read off a [`Wire`].
pub struct H1Body {
    wire: Option<Box<Wire>>,
    decoder: Decoder,
    sender: Option<Box<Sender>>,
    eof: bool,
    /// The head allowed another request and the request did not ask to close.
    reusable: bool,
    endpoint: Arc<Endpoint>,
    /// Some body has been handed on.
    yielded: bool,
    /// An error held back for one poll (see `poll_frame`).
    held: Option<BodyError>,
}

// === impl Io ===

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, b),
            Io::Tls(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

// === impl Wire ===

impl Wire {
    /// A connection just opened. Unless told another reason ([`Wire::close_as`]), it
    /// is counted as closed because its exchange did not end exactly.
    pub fn new(io: Io, count: Arc<ConnCount>) -> Box<Wire> {
        Box::new(Wire {
            io,
            buf: BytesMut::new(),
            names: decode::Names::default(),
            timer: None,
            read_size: MIN_READ,
            counted: OpenGuard::new(count, Closed::Unfinished),
        })
    }

    /// The reason the connection is counted under when it is dropped.
    pub fn close_as(&mut self, why: Closed) {
        self.counted.close_as(why);
    }

    /// Whether a pooled connection can no longer carry a request: the upstream closed
    /// it, or sent bytes no request asked for. One read with a no-op waker: tokio
    /// clears read readiness after a short read, so an idle healthy socket answers
    /// `Pending` without a syscall; a TLS record the upstream sent meanwhile (a session
    /// ticket) is taken in by rustls and is not application data.
    pub fn is_stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.buf.reserve(64);
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf);
        !matches!(r, Poll::Pending)
    }

    /// Sets the connection's timer to `until`.
    fn arm(&mut self, until: Instant) {
        match &mut self.timer {
            Some(t) => t.as_mut().reset(until),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(until))),
        }
    }

    /// Whether the armed deadline has passed, without registering for it.
    fn is_late(&self) -> bool {
        self.timer.as_ref().is_some_and(|t| t.is_elapsed())
    }

    /// An exchange that must wait: `Pending`, with the task woken at the armed
    /// deadline when the exchange is `timed`, or the timeout if it has passed. Polled
    /// only when the exchange waits, not each time it is polled (a poll of the timer
    /// is about 120 instructions). An untimed exchange (a health check) leaves the
    /// timer a request before it armed alone.
    fn wait<T>(&mut self, cx: &mut Context<'_>, timed: bool) -> Poll<Result<T, ProxyError>> {
        match self
            .timer
            .as_mut()
            .filter(|_| timed)
            .map(|t| t.as_mut().poll(cx))
        {
            Some(Poll::Ready(())) => Poll::Ready(Err(timed_out())),
            _ => Poll::Pending,
        }
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < LOW_WATER {
            self.buf.reserve(self.read_size as usize);
        }
        let room = self.buf.capacity() - self.buf.len();
        let r = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ));
        if let Ok(n) = r {
            if n == room {
                self.read_size = (self.read_size * 2).min(MAX_READ);
            } else if n < self.read_size as usize / 8 {
                self.read_size = (self.read_size / 2).max(MIN_READ);
            }
        }
        Poll::Ready(r)
    }
}

/// After a 101 the connection is a tunnel: bytes already read past the head come first.
impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            let n = this.buf.len().min(out.remaining());
            out.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            if this.buf.is_empty() {
                // A tunnel's side holds no buffer once its early bytes are read.
                this.buf = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

// === send ===

/// Writes `req` on `wire` and reads the response head. A bodiless or buffered request
/// leaves in one write; a streamed body is written while the head is awaited (an
/// upstream may answer before it has read the whole body) and, after the head, by the
/// response body as it is read. The request is turned into bytes before the returned
/// future exists, so the future holds no request head: it is part of every request's
/// future, moved whole on each request.
pub fn send(
    wire: Box<Wire>,
    req: Request<UpstreamBody>,
    endpoint: &Arc<Endpoint>,
    until: Option<Instant>,
) -> impl Future<Output = Result<Response<H1Body>, ProxyError>> + Send + 'static {
    exchange(wire, Prepared::new(req), endpoint.clone(), until)
}

/// A request as bytes to write, and the body still to stream.
struct Prepared {
    bytes: Vec<u8>,
    sender: Option<Box<Sender>>,
    head_request: bool,
    /// The request asked the upstream to close after it.
    close: bool,
}

impl Prepared {
    fn new(req: Request<UpstreamBody>) -> Prepared {
        let (mut parts, body) = req.into_parts();
        let length = if body.is_end_stream() {
            BodyLength::Empty
        } else {
            match body.size_hint().exact() {
                Some(n) => BodyLength::Known(n),
                None => BodyLength::Unknown,
            }
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut bytes = Vec::new();
        let encode::Written { enc, close } = encode::head(
            &parts.method,
            target,
            &mut parts.headers,
            length,
            &mut bytes,
        );
        let sender = match body {
            UpstreamBody::Empty => None,
            UpstreamBody::Full(b) => {
                if let Some(b) = b {
                    encode::data(enc, &b, &mut bytes);
                }
                encode::end(enc, &mut bytes);
                None
            }
            // GET/HEAD/CONNECT with a body of unknown length send none (hyper's rule).
            _ if enc == Encoding::Length(0) => None,
            body => Some(Box::new(Sender::new(body, enc))),
        };
        Prepared {
            bytes,
            sender,
            head_request: parts.method == Method::HEAD,
            close,
        }
    }
}

async fn exchange(
    mut wire: Box<Wire>,
    p: Prepared,
    endpoint: Arc<Endpoint>,
    until: Option<Instant>,
) -> Result<Response<H1Body>, ProxyError> {
    let Prepared {
        bytes,
        mut sender,
        head_request,
        close,
    } = p;
    if let Some(t) = until {
        wire.arm(t);
    }
    let mut awaiting = Awaiting {
        wire: Some(wire),
        endpoint,
        head_request,
        whole: false,
    };
    let (mut written, mut flushed) = (0, false);
    let mut answered = false;
    // The request body was cut short: the connection cannot carry another request.
    let mut cut = false;
    let head = poll_fn(|cx| {
        let Some(wire) = awaiting.wire.as_deref_mut() else {
            return Poll::Ready(Err(ProxyError::new(ErrorKind::Internal, "no connection")));
        };
        // The deadline covers the whole exchange, a write stuck on the upstream too;
        // each way out with `Pending` goes through `Wire::wait`.
        if until.is_some() && wire.is_late() {
            return Poll::Ready(Err(timed_out()));
        }
        if !flushed {
            while written < bytes.len() {
                let Poll::Ready(w) = Pin::new(&mut wire.io).poll_write(cx, &bytes[written..])
                else {
                    return wire.wait(cx, until.is_some());
                };
                match w {
                    Ok(0) => {
                        return Poll::Ready(Err(invalid(NoResponse(Some(
                            io::ErrorKind::WriteZero.into(),
                        )))))
                    }
                    Ok(n) => written += n,
                    Err(e) => return Poll::Ready(Err(invalid(NoResponse(Some(e))))),
                }
            }
            let Poll::Ready(f) = Pin::new(&mut wire.io).poll_flush(cx) else {
                return wire.wait(cx, until.is_some());
            };
            if let Err(e) = f {
                return Poll::Ready(Err(invalid(NoResponse(Some(e)))));
            }
            flushed = true;
        }
        if let Some(s) = sender.as_mut() {
            match s.poll(cx, &mut wire.io) {
                Poll::Ready(Ok(())) => sender = None,
                Poll::Ready(Err(SendFailed::Body(e))) => return Poll::Ready(Err(body_error(e))),
                // The upstream may have answered and closed: read what it sent.
                Poll::Ready(Err(SendFailed::Io(e))) if !answered => {
                    return Poll::Ready(Err(invalid(NoResponse(Some(e)))))
                }
                Poll::Ready(Err(SendFailed::Io(_))) => {
                    sender = None;
                    cut = true;
                }
                Poll::Pending => {}
            }
        }
        // Only a request that went out whole leaves a connection worth finishing.
        awaiting.whole = flushed && sender.is_none() && !cut && !close;
        match poll_head(wire, cx, head_request, &mut answered) {
            Poll::Pending => wire.wait(cx, until.is_some()),
            ready => ready,
        }
    })
    .await;
    let (head, wire) = match (head, awaiting.wire.take()) {
        (Ok(h), Some(w)) => (h, w),
        (Err(e), _) => return Err(e),
        (Ok(_), None) => return Err(ProxyError::new(ErrorKind::Internal, "no connection")),
    };
    let mut resp = Response::new(H1Body {
        decoder: Decoder::new(head.framing),
        eof: false,
        reusable: head.keep_alive && !close && !cut,
        wire: Some(wire),
        sender,
        endpoint: awaiting.endpoint.clone(),
        yielded: false,
        held: None,
    });
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

/// The connection of a request written whole whose response head has not come yet.
/// Dropped at that point (the client went away, or a deadline passed), it reads the
/// response to its end in the background, within bounds, and pools the connection
/// instead of closing it: under load a client's abort would otherwise cost a new
/// upstream connection each time.
struct Awaiting {
    wire: Option<Box<Wire>>,
    endpoint: Arc<Endpoint>,
    head_request: bool,
    whole: bool,
}

/// How long, and how much of a response, a given-up exchange is read on before its
/// connection is closed instead.
const FINISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);
const FINISH_AT_MOST: u64 = 64 * 1024;

impl Drop for Awaiting {
    fn drop(&mut self) {
        let Some(wire) = self.wire.take().filter(|_| self.whole) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (endpoint, head_request) = (self.endpoint.clone(), self.head_request);
        rt.spawn(async move {
            let _ = tokio::time::timeout(FINISH_WITHIN, finish(wire, head_request, endpoint)).await;
        });
    }
}

/// Reads a response nobody waits for to its end; pools the connection if it ended
/// exactly and may carry another request.
async fn finish(mut wire: Box<Wire>, head_request: bool, endpoint: Arc<Endpoint>) {
    // Its deadline was the abandoned request's.
    wire.timer = None;
    let mut answered = true;
    let Ok(head) = poll_fn(|cx| poll_head(&mut wire, cx, head_request, &mut answered)).await else {
        return;
    };
    if !head.keep_alive {
        wire.close_as(Closed::NotReusable);
        return;
    }
    let (mut decoder, mut read, mut eof) = (Decoder::new(head.framing), 0u64, false);
    loop {
        match decoder.step(&mut wire.buf, eof) {
            Ok(Step::Data(b)) => {
                read += b.len() as u64;
                if read > FINISH_AT_MOST {
                    return;
                }
            }
            Ok(Step::Trailers(_)) => {}
            Ok(Step::End) => break,
            Ok(Step::More) => match poll_fn(|cx| wire.poll_fill(cx)).await {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
    if wire.buf.is_empty() {
        endpoint.pool.put(wire);
    }
}

/// Reads until a final head is in the buffer; `answered` turns true with the first byte.
fn poll_head(
    wire: &mut Wire,
    cx: &mut Context<'_>,
    head_request: bool,
    answered: &mut bool,
) -> Poll<Result<decode::Head, ProxyError>> {
    loop {
        match decode::read_head(&mut wire.buf, head_request, &mut wire.names) {
            Ok(Some(h)) => return Poll::Ready(Ok(h)),
            Ok(None) => {}
            Err(m) => return Poll::Ready(Err(invalid(m))),
        }
        match ready!(wire.poll_fill(cx)) {
            Ok(0) if !*answered => return Poll::Ready(Err(invalid(NoResponse(None)))),
            Ok(0) => return Poll::Ready(Err(invalid(Malformed::Truncated))),
            Ok(_) => *answered = true,
            Err(e) if !*answered => return Poll::Ready(Err(invalid(NoResponse(Some(e))))),
            Err(e) => return Poll::Ready(Err(upstream_io(e))),
        }
    }
}

/// The deadline passed before the response head came.
pub fn timed_out() -> ProxyError {
    ProxyError::new(
        ErrorKind::UpstreamTimeout,
        "upstream did not answer in time",
    )
    .with_source(TimedOut)
}

/// The upstream did not send a valid response head: `source` says how (a
/// [`NoResponse`] when nothing came at all, a [`Malformed`] otherwise).
fn invalid(source: impl Into<BodyError>) -> ProxyError {
    ProxyError::new(
        ErrorKind::UpstreamProtocol,
        "upstream did not send a valid response",
    )
    .with_source(source)
}

fn upstream_io(e: io::Error) -> ProxyError {
    ProxyError::new(
        ErrorKind::UpstreamProtocol,
        "upstream connection failed during the response",
    )
    .with_source(e)
}

/// A request body failure before the response: over its limit is the client's 413,
/// anything else the client's 400 (as hyper's client reports a body error: a user error).
fn body_error(e: BodyError) -> ProxyError {
    if crate::body::find_cause::<BodyTooLarge>(&*e).is_some() {
        return ProxyError::new(ErrorKind::PayloadTooLarge, "request body too large")
            .with_source(e);
    }
    ProxyError::new(ErrorKind::BadRequest, "request body failed").with_source(e)
}

// === impl Sender ===

impl Sender {
    fn new(body: UpstreamBody, enc: Encoding) -> Sender {
        let owed = match enc {
            Encoding::Length(n) => n,
            Encoding::Chunked => 0,
        };
        Sender {
            body,
            enc,
            owed,
            pending: Bytes::new(),
            ended: false,
        }
    }

    /// Writes what the body has; `Ready(Ok)` once all of it, and its end, is written.
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut Io) -> Poll<Result<(), SendFailed>> {
        loop {
            if !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))
                    .map_err(SendFailed::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(SendFailed::Io(io::ErrorKind::WriteZero.into())));
                }
                self.pending.advance(n);
                continue;
            }
            if self.ended {
                return Pin::new(&mut *io).poll_flush(cx).map_err(SendFailed::Io);
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers of a streamed request are not forwarded (hyper's client
                    // sends them only when the request asked for them with `TE`).
                    if let Ok(data) = frame.into_data() {
                        self.frame(data)?;
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(SendFailed::Body(e))),
                None => {
                    if self.enc != Encoding::Chunked && self.owed != 0 {
                        return Poll::Ready(Err(SendFailed::Body(Box::new(LengthMismatch))));
                    }
                    let mut last = Vec::new();
                    encode::end(self.enc, &mut last);
                    self.pending = Bytes::from(last);
                    self.ended = true;
                }
            }
        }
    }

    fn frame(&mut self, data: Bytes) -> Result<(), SendFailed> {
        if data.is_empty() {
            return Ok(());
        }
        match self.enc {
            Encoding::Chunked => {
                let mut framed = Vec::with_capacity(data.len() + 12);
                encode::data(self.enc, &data, &mut framed);
                self.pending = Bytes::from(framed);
            }
            Encoding::Length(_) => {
                let n = data.len() as u64;
                if n > self.owed {
                    return Err(SendFailed::Body(Box::new(LengthMismatch)));
                }
                self.owed -= n;
                self.pending = data;
            }
        }
        Ok(())
    }
}

// === impl H1Body ===

impl H1Body {
    /// The connection, for a tunnel after `101 Switching Protocols`.
    pub fn into_wire(mut self) -> Option<Box<Wire>> {
        let mut wire = self.wire.take()?;
        wire.timer = None;
        wire.close_as(Closed::Upgraded);
        // A tunnel reads through the copy's scratch buffer: the read buffer (16 KiB
        // reserved, a page of it written by the head) keeps only bytes read past the 101.
        wire.buf = BytesMut::from(&wire.buf[..]);
        Some(wire)
    }

    /// Puts the connection back in its pool if the response was read exactly to its end,
    /// the request went out whole and nothing follows in the buffer; otherwise closes it.
    pub fn release(&mut self) {
        let Some(mut wire) = self.wire.take() else {
            return;
        };
        if !(self.decoder.is_done() && self.sender.is_none() && wire.buf.is_empty()) {
            return;
        }
        if self.reusable {
            self.endpoint.pool.put(wire);
        } else {
            wire.close_as(Closed::NotReusable);
        }
    }

    /// Keeps writing the request body, if some is left.
    fn poll_sender(&mut self, cx: &mut Context<'_>, io: &mut Io) -> Result<(), BodyError> {
        let Some(s) = self.sender.as_mut() else {
            return Ok(());
        };
        match s.poll(cx, io) {
            Poll::Ready(Ok(())) => self.sender = None,
            Poll::Ready(Err(SendFailed::Body(e))) => {
                self.reusable = false;
                return Err(e);
            }
            // The upstream stopped reading; the rest of its response may still come.
            Poll::Ready(Err(SendFailed::Io(_))) => {
                self.reusable = false;
                self.sender = None;
            }
            Poll::Pending => {}
        }
        Ok(())
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(e) = this.held.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(mut wire) = this.wire.take() else {
            return Poll::Ready(None);
        };
        let r = this.poll_with(&mut wire, cx);
        this.wire = Some(wire);
        match r {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.decoder.is_done() => this.release(),
            Poll::Ready(Some(Err(e))) => {
                this.wire = None;
                // The server writes the head and the first bytes with the next frame; an
                // error in the same poll would close the client connection before they
                // leave. One pause lets it flush them, so the client sees a cut body
                // rather than nothing, as when the error comes later.
                if this.yielded {
                    this.held = Some(e);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {}
        }
        if matches!(r, Poll::Ready(Some(Ok(_)))) {
            this.yielded = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl H1Body {
    fn poll_with(
        &mut self,
        wire: &mut Wire,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Err(e) = self.poll_sender(cx, &mut wire.io) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            match self.decoder.step(&mut wire.buf, self.eof) {
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Ok(Step::Trailers(t)) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(m) => return Poll::Ready(Some(Err(Box::new(m)))),
            }
            match ready!(wire.poll_fill(cx)) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }
}
