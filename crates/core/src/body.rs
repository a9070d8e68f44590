//! Body types on both sides of the proxy, as enums rather than boxed trait objects so the
//! common paths allocate nothing: [`ClientBody`] is a request body as the client-facing
//! server hands it over (hyper's on HTTP/1, ours on HTTP/2), [`UpstreamBody`] carries it
//! to the upstream (with the size limit), [`ResponseBody`] carries the upstream's (or a local)
//! response to the client and, when it ends, hands the upstream connection back to its
//! pool and completes the access-log record.

use crate::access_log::Completion;
use crate::body_edit::Edited;
use crate::http::client::Received;
use crate::http::conn_state::{Answered, BodyUnread};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::Sleep;

/// Errors produced while streaming a body through the proxy.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The request body went over its limit; found in an upstream error's source chain to
/// answer 413 instead of 502.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The whole-request deadline passed while the response body was streaming.
#[derive(Debug, thiserror::Error)]
#[error("request deadline passed while streaming the response")]
pub struct DeadlinePassed;

/// hyper's body with its error boxed, to sit beside the proxy's own bodies in an enum.
/// A client's HTTP/1 request body holds its connection's [`BodyUnread`] mark until it
/// ends.
pub struct Hyper {
    body: Incoming,
    unread: Option<BodyUnread>,
}

impl Hyper {
    pub fn new(body: Incoming) -> Hyper {
        Hyper { body, unread: None }
    }

    /// A client's request body, with its connection's unread mark if it has one.
    pub fn marked(body: Incoming, unread: Option<BodyUnread>) -> Hyper {
        Hyper { body, unread }
    }
}

impl Body for Hyper {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if this.unread.is_some() && !matches!(r, Some(Ok(_)) if !this.body.is_end_stream()) {
            this.unread = None;
        }
        Poll::Ready(r.map(|f| f.map_err(|e| Box::new(e) as BodyError)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Implements `Body` for an enum each of whose variants holds an `Unpin` body of
/// `Bytes` and [`BodyError`], by handing every call to the variant's body.
macro_rules! delegate_body {
    ($ty:ident: $($v:ident),+) => {
        impl http_body::Body for $ty {
            type Data = bytes::Bytes;
            type Error = $crate::body::BodyError;

            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<
                Option<Result<http_body::Frame<bytes::Bytes>, $crate::body::BodyError>>,
            > {
                match self.get_mut() {
                    $($ty::$v(b) => std::pin::Pin::new(b).poll_frame(cx),)+
                }
            }

            fn is_end_stream(&self) -> bool {
                match self {
                    $($ty::$v(b) => b.is_end_stream(),)+
                }
            }

            fn size_hint(&self) -> http_body::SizeHint {
                match self {
                    $($ty::$v(b) => b.size_hint(),)+
                }
            }
        }
    };
}
pub(crate) use delegate_body;

/// A client's request body.
pub enum ClientBody {
    Http1(Hyper),
    Http2(crate::http::h2::RecvBody),
}

delegate_body!(ClientBody: Http1, Http2);

/// The body sent to an upstream.
pub enum UpstreamBody {
    Empty,
    /// A buffered request body, kept so a retry can send it again.
    Full(Option<Bytes>),
    Incoming {
        inner: ClientBody,
        /// Bytes allowed; `u64::MAX` when unlimited.
        limit: u64,
        seen: u64,
        /// Filled in for the access log when it is on.
        counter: Option<Arc<AtomicU64>>,
        /// A copy for a mirrored request, made as the body streams.
        tee: Option<Box<Tee>>,
    },
    /// A body edited by filters as it streams.
    Edited(Box<(UpstreamBody, Edited)>),
}

/// Copies a streaming body for a mirror, up to a bound: the copy is sent when the body
/// ends whole; over the bound, or on an error, the mirror gets nothing.
pub struct Tee {
    copy: bytes::BytesMut,
    limit: usize,
    done: tokio::sync::oneshot::Sender<Bytes>,
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Upstream(Received),
}

/// The body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    completion: Option<Completion>,
    /// The client connection's mark for this request, let go when the body ends.
    open: Option<Answered>,
    sent: u64,
    /// What few responses have, boxed: every response is moved several times on its
    /// way to the client, and at 256 bytes or less a move is about half the
    /// instructions (callgrind: 29 against 52 for 272).
    rare: Option<Box<Rare>>,
}

/// A response body's rarer parts.
#[derive(Default)]
struct Rare {
    /// The whole-request deadline, while the body streams.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Filters' streaming edits, when a filter asked for any.
    edits: Option<Edited>,
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub fn incoming(
        inner: ClientBody,
        limit: Option<u64>,
        counter: Option<Arc<AtomicU64>>,
    ) -> Self {
        UpstreamBody::Incoming {
            inner,
            limit: limit.unwrap_or(u64::MAX),
            seen: 0,
            counter,
            tee: None,
        }
    }

    /// Starts copying a streaming body (at most `limit` bytes); the receiver gets the
    /// copy when the body has ended whole.
    pub fn tee(&mut self, limit: usize) -> Option<tokio::sync::oneshot::Receiver<Bytes>> {
        let tee = match self {
            UpstreamBody::Incoming { tee, .. } => tee,
            // The mirror gets the body as the client sent it.
            UpstreamBody::Edited(b) => return b.0.tee(limit),
            _ => return None,
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        *tee = Some(Box::new(Tee {
            copy: bytes::BytesMut::new(),
            limit,
            done,
        }));
        Some(rx)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Edited(b) => {
                let (inner, edits) = &mut **b;
                edits.poll(cx, |cx| Pin::new(&mut *inner).poll_frame(cx))
            }
            UpstreamBody::Incoming {
                inner,
                limit,
                seen,
                counter,
                tee,
            } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            *seen += d.len() as u64;
                            if let Some(c) = counter {
                                c.store(*seen, Ordering::Relaxed);
                            }
                            if *seen > *limit {
                                *tee = None;
                                return Poll::Ready(Some(Err(Box::new(BodyTooLarge(*limit)))));
                            }
                            if let Some(t) = tee {
                                if t.copy.len() + d.len() > t.limit {
                                    *tee = None;
                                } else {
                                    t.copy.extend_from_slice(d);
                                }
                            }
                            // A sender may stop polling at the end of the stream, before
                            // the final `None`.
                            if inner.is_end_stream() {
                                if let Some(t) = tee.take() {
                                    let _ = t.done.send(t.copy.freeze());
                                }
                            }
                        }
                        Poll::Ready(Some(Ok(f)))
                    }
                    Some(Err(e)) => {
                        *tee = None;
                        Poll::Ready(Some(Err(e)))
                    }
                    None => {
                        if let Some(t) = tee.take() {
                            let _ = t.done.send(t.copy.freeze());
                        }
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Full(b) => b.is_none(),
            UpstreamBody::Incoming { inner, .. } => inner.is_end_stream(),
            UpstreamBody::Edited(b) => b.1.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            UpstreamBody::Incoming { inner, .. } => inner.size_hint(),
            // An edit may change the length.
            UpstreamBody::Edited(_) => SizeHint::default(),
        }
    }
}

// === impl ResponseBody ===

impl ResponseBody {
    pub fn empty() -> Self {
        Self::with(Inner::Empty)
    }

    pub fn full(b: Bytes) -> Self {
        Self::with(Inner::Full(Some(b)))
    }

    pub fn upstream(b: Received) -> Self {
        Self::with(Inner::Upstream(b))
    }

    fn with(inner: Inner) -> Self {
        ResponseBody {
            inner,
            completion: None,
            open: None,
            sent: 0,
            rare: None,
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// Runs the body through filters' streaming edits.
    pub fn edit(&mut self, edits: Edited) {
        self.rare().edits = Some(edits);
    }

    /// Runs `c` once when the body ends, fails or is dropped.
    pub fn set_completion(&mut self, c: Completion) {
        self.completion = Some(c);
    }

    /// Holds the client connection's mark for this request until the body ends.
    pub fn hold(&mut self, open: Answered) {
        self.open = Some(open);
    }

    /// Ends the body with an error if it is still streaming at `deadline`.
    pub fn set_deadline(&mut self, deadline: tokio::time::Instant) {
        self.rare().deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
    }

    fn finish(&mut self, ok: bool) {
        if let Inner::Upstream(b) = &mut self.inner {
            if ok {
                b.release();
            }
        }
        if let Some(c) = self.completion.take() {
            c.finish(self.sent, ok);
        }
        self.open = None;
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(d) = this.rare.as_mut().and_then(|r| r.deadline.as_mut()) {
            if d.as_mut().poll(cx).is_ready() {
                this.finish(false);
                return Poll::Ready(Some(Err(Box::new(DeadlinePassed))));
            }
        }
        let inner = &mut this.inner;
        let frame = match this.rare.as_mut().and_then(|r| r.edits.as_mut()) {
            None => ready!(inner.poll(cx)),
            Some(e) => ready!(e.poll(cx, |cx| inner.poll(cx))),
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Some(Err(_)) => this.finish(false),
            None => this.finish(true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        if let Some(e) = self.rare.as_ref().and_then(|r| r.edits.as_ref()) {
            return e.is_end_stream();
        }
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.rare.as_ref().is_some_and(|r| r.edits.is_some()) {
            return SizeHint::default();
        }
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map(|b| b.len() as u64).unwrap_or(0)),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}

impl Inner {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Ready(match self {
            Inner::Empty => None,
            Inner::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Inner::Upstream(b) => ready!(Pin::new(b).poll_frame(cx)),
        })
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body dropped before its end (client went away) must not return its upstream
        // connection: the rest of that response is still on the wire.
        if matches!(self.inner, Inner::Upstream(_)) || self.completion.is_some() {
            let done = self.is_end_stream();
            self.finish(done);
        }
    }
}

/// Finds an error of type `T` in `e`'s source chain.
pub fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}
