//! The client-facing HTTP/2 server, on the h2 crate: what hyper's HTTP/2 server did,
//! plus what it cannot do. A request that expects `100-continue` gets its `100` when
//! the upstream starts reading the body (hyper never sends it on HTTP/2, so such an
//! upload waited out the client's expect timer), and an invalid connection preface is
//! answered with GOAWAY(PROTOCOL_ERROR) before the close (RFC 9113 3.4).
//!
//! A connection's streams run inside the connection's own future (a
//! `FuturesUnordered`), as hyper's HTTP/1 requests run inside theirs: no task to spawn
//! per stream, and the future is not moved once it is in place. A stream whose client
//! resets it drops its request future, which cancels the upstream exchange.

use crate::body::{BodyError, ClientBody, ResponseBody};
use crate::http::{date, headers};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// The HTTP/2 connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection settings; the windows, frame and buffer sizes are hyper's defaults.
#[derive(Clone, Copy)]
pub struct Settings {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
}

/// One HTTP/2 client connection being served; a future that ends when the
/// connection does.
pub struct H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    state: State<I>,
    streams: FuturesUnordered<Stream<Fut>>,
    service: F,
    /// The listener drains: shut down as soon as the handshake is done.
    draining: bool,
}

enum State<I: AsyncRead + AsyncWrite + Unpin> {
    Handshaking(Handshake<I, Bytes>),
    Serving(Connection<I, Bytes>),
    Done,
}

impl<I, F, Fut> H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<ClientBody>) -> Fut,
    Fut: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    /// Serves `io`, whose connection preface is known to be valid (see [`preface`]).
    pub fn new(io: I, settings: Settings, service: F) -> Self {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(1024 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_frame_size(16 * 1024)
            .max_send_buffer_size(400 * 1024)
            .max_header_list_size(settings.max_header_list_size)
            .max_concurrent_streams(settings.max_concurrent_streams)
            .max_local_error_reset_streams(Some(1024));
        H2Conn {
            state: State::Handshaking(b.handshake(io)),
            streams: FuturesUnordered::new(),
            service,
            draining: false,
        }
    }

    /// Stops taking new streams (GOAWAY) and ends once the open ones are done.
    pub fn graceful_shutdown(&mut self) {
        self.draining = true;
        if let State::Serving(c) = &mut self.state {
            c.graceful_shutdown();
        }
    }

    fn accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        loop {
            match &mut self.state {
                State::Handshaking(h) => {
                    let mut conn = ready!(Pin::new(h).poll(cx))?;
                    if self.draining {
                        conn.graceful_shutdown();
                    }
                    self.state = State::Serving(conn);
                }
                State::Serving(conn) => match ready!(conn.poll_accept(cx)) {
                    Some(Ok((req, respond))) => {
                        let stream = Stream::new(req, respond, &self.service);
                        self.streams.push(stream);
                    }
                    Some(Err(e)) => return Poll::Ready(Err(e)),
                    None => {
                        self.state = State::Done;
                        return Poll::Ready(Ok(()));
                    }
                },
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<I, F, Fut> Future for H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<ClientBody>) -> Fut + Unpin,
    Fut: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Streams first: what they send is flushed by the connection's poll below.
        while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
        let accepted = this.accept(cx);
        // Streams accepted just now get their first poll.
        while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
        match accepted {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if this.streams.is_empty() => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }
}

/// One stream: the request future until the response head, then the response body
/// piped into the stream.
struct Stream<Fut> {
    step: Step<Fut>,
    respond: SendResponse<Bytes>,
    /// Fires when the upstream first reads the body of a request that expects
    /// 100-continue.
    wants_body: Option<oneshot::Receiver<()>>,
}

enum Step<Fut> {
    /// The request's future: `Unpin`, as it boxes what must not move (see
    /// `server::Counted`), so it is held here without a box of its own.
    Waiting(Fut),
    Piping(SendStream<Bytes>, ResponseBody),
    Done,
}

impl<Fut> Stream<Fut>
where
    Fut: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    fn new<F>(req: Request<RecvStream>, respond: SendResponse<Bytes>, service: &F) -> Self
    where
        F: Fn(Request<ClientBody>) -> Fut,
    {
        let expects = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (tx, wants_body) = match expects {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let length = content_length(req.headers());
        let req = req.map(|recv| ClientBody::Http2(RecvBody::new(recv, length, tx)));
        Stream {
            step: Step::Waiting(service(req)),
            respond,
            wants_body,
        }
    }

    /// Polls the request future; sends the head when it is ready.
    fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Step::Waiting(fut) = &mut self.step else {
            return Poll::Ready(());
        };
        if let Some(rx) = &mut self.wants_body {
            if let Poll::Ready(r) = Pin::new(rx).poll(cx) {
                self.wants_body = None;
                if r.is_ok() {
                    let cont = Response::builder().status(StatusCode::CONTINUE).body(());
                    if let Ok(cont) = cont {
                        let _ = self.respond.send_informational(cont);
                    }
                }
            }
        }
        let resp = match Pin::new(fut).poll(cx) {
            Poll::Ready(Ok(resp)) => resp,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => {
                // A client reset cancels the request: dropping its future drops the
                // exchange with the upstream.
                if self.respond.poll_reset(cx).is_ready() {
                    self.step = Step::Done;
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
        };
        self.step = match send_head(&mut self.respond, resp) {
            Some((tx, body)) => Step::Piping(tx, body),
            None => Step::Done,
        };
        Poll::Ready(())
    }
}

impl<Fut> Future for Stream<Fut>
where
    Fut: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Unpin: the request future boxes the part that must not move.
        let this = self.get_mut();
        ready!(this.poll_response(cx));
        if let Step::Piping(tx, body) = &mut this.step {
            ready!(pipe(tx, body, cx));
        }
        this.step = Step::Done;
        Poll::Ready(())
    }
}

/// Sends the response head; the body to pipe after it, unless the head ended the stream.
fn send_head(
    respond: &mut SendResponse<Bytes>,
    resp: Response<ResponseBody>,
) -> Option<(SendStream<Bytes>, ResponseBody)> {
    let (mut parts, body) = resp.into_parts();
    // Connection-specific fields are malformed on HTTP/2 (RFC 9113 8.2.2).
    headers::strip_hop_by_hop(&mut parts.headers, false);
    date::ensure(&mut parts.headers);
    let end = body.is_end_stream();
    if !end {
        if let Some(n) = body.size_hint().exact() {
            parts
                .headers
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(n));
        }
    }
    let head = Response::from_parts(parts, ());
    match respond.send_response(head, end) {
        Ok(tx) if !end => Some((tx, body)),
        // An ended body is dropped here, which completes it (see `ResponseBody`).
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "sending an HTTP/2 response head failed");
            None
        }
    }
}

/// Moves the response body into the stream as the client's window allows.
fn pipe(tx: &mut SendStream<Bytes>, body: &mut ResponseBody, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        // Ask for a byte of window; once there is some, a whole chunk goes out (h2
        // buffers what is past the window, up to its send buffer), as hyper does.
        tx.reserve_capacity(1);
        if tx.capacity() == 0 {
            match ready!(tx.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Poll::Ready(()),
            }
        }
        if tx.poll_reset(cx).is_ready() {
            return Poll::Ready(());
        }
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if tx.send_data(data, end).is_err() || end {
                        return Poll::Ready(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = tx.send_trailers(trailers);
                    }
                    return Poll::Ready(());
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed: resetting the stream");
                tx.send_reset(Reason::INTERNAL_ERROR);
                return Poll::Ready(());
            }
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return Poll::Ready(());
            }
        }
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// An HTTP/2 request body: DATA frames, then trailers. Window is given back as the
/// upstream takes the data, so the client sends no faster than the upstream reads.
pub struct RecvBody {
    recv: RecvStream,
    /// Content-Length, which h2 holds the DATA frames to.
    length: Option<u64>,
    /// Told when the body is first read, for a request that expects 100-continue.
    wants_body: Option<oneshot::Sender<()>>,
    data_done: bool,
}

impl RecvBody {
    fn new(recv: RecvStream, length: Option<u64>, wants_body: Option<oneshot::Sender<()>>) -> Self {
        RecvBody {
            recv,
            length,
            wants_body,
            data_done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(tx) = self.wants_body.take() {
            let _ = tx.send(());
        }
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(Box::new(e)))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Answers a connection whose preface was invalid: the server preface (an empty
/// SETTINGS), then GOAWAY with PROTOCOL_ERROR and no stream processed, then a close.
pub async fn refuse<I: AsyncWrite + Unpin>(io: &mut I) {
    const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    const DEBUG: &[u8] = b"invalid connection preface";
    let mut goaway = Vec::with_capacity(9 + 8 + DEBUG.len());
    let len = (8 + DEBUG.len()) as u32;
    goaway.extend_from_slice(&len.to_be_bytes()[1..]);
    goaway.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
    goaway.extend_from_slice(&0u32.to_be_bytes());
    goaway.extend_from_slice(&u32::from(Reason::PROTOCOL_ERROR).to_be_bytes());
    goaway.extend_from_slice(DEBUG);
    let _ = io.write_all(&SETTINGS).await;
    let _ = io.write_all(&goaway).await;
    let _ = io.shutdown().await;
}
