//! Serving one client connection: hyper's HTTP/1.1 server (upgrades enabled) or
//! Gatehouse's HTTP/2 server on h2 ([`super::h2`]), chosen by ALPN on TLS listeners and
//! by the first bytes on plain ones (h2c with prior knowledge). Applies the header-read
//! (slowloris) timeout, header limits and the idle timeout, and shuts the connection
//! down gracefully when its listener drains. An idle HTTP/1 connection is parked
//! between requests (see [`super::park`]).

use super::conn_state::{Activity, BodyUnread, ConnState, HeadClock, Open};
use super::h2::{self, H2Conn};
use super::park::{Lot, Park, Parked, Socket};
use super::rewind::Rewind;
use crate::body::{ClientBody, Hyper, ResponseBody};
use crate::drain::Watch;
use crate::proxy::{self, ConnCtx};
use crate::proxy_protocol::ClientStream;
use crate::runtime::ListenerRt;
use crate::wake_gate::Gated;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// How the connection's protocol is chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain TCP: HTTP/1.1, or HTTP/2 if the client opens with the preface.
    Sniff,
    Http1,
    Http2,
}

/// Serves a connection until it closes, times out idle, or drains. An idle HTTP/1
/// connection is parked in `lot` (see `park`) and this returns; its next request is
/// served by [`resume`].
pub async fn serve<I>(
    io: I,
    ctx: Arc<ConnCtx>,
    l: &ListenerRt,
    proto: Proto,
    tls: bool,
    lot: Option<Arc<Lot>>,
) where
    I: Park + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut watch = ctx.drain.clone();
    let proto = match proto {
        Proto::Sniff if !l.spec.http2 => Proto::Http1,
        p => p,
    };
    let clock = match proto {
        Proto::Sniff => HeadClock::FromFirstByte,
        Proto::Http1 => HeadClock::FromStart,
        Proto::Http2 => HeadClock::Off,
    };
    let state = ConnState::new(clock);
    let mut io = Activity::new(io, state.clone());
    let limits = Limits::of(l, lot.is_some());
    let (http2, first) = match proto {
        Proto::Http1 => (false, Sniffed::default()),
        Proto::Http2 | Proto::Sniff => {
            // A drain does not drop a connection whose first bytes may be on the way:
            // it shortens their wait to `header_read`.
            let sniffed = {
                let sniffing = sniff(&mut io, proto == Proto::Http2);
                tokio::pin!(sniffing);
                // Biased: the bytes are mostly there already, and then the drain's
                // watch is never polled (its waiter registered and removed again).
                tokio::select! {
                    biased;
                    r = tokio::time::timeout(limits.idle, &mut sniffing) => r,
                    _ = watch.signaled() => {
                        tokio::time::timeout(limits.header_read, &mut sniffing).await
                    }
                }
            };
            let first = match sniffed {
                Ok(Some(first)) => first,
                // Silent past the timeout, or closed before a byte.
                Ok(None) | Err(_) => return,
            };
            if first.bad_preface {
                h2::refuse(&mut io).await;
                return;
            }
            (first.http2, first)
        }
    };
    let io = Rewind::new(io, first.bytes);
    if http2 {
        state.stop_head_clock();
        let settings = h2::Settings {
            max_concurrent_streams: 256,
            max_header_list_size: u32::try_from(l.spec.limits.max_header_size).unwrap_or(u32::MAX),
        };
        let st = state.clone();
        let svc = move |req| Counted::new(Open::enter(&st), proxy::handle(req, ctx.clone()));
        // Boxed, as the HTTP/1 side is: the task keeps no room for either.
        let mut conn = Box::pin(H2Conn::new(io, settings, svc));
        Box::pin(drive(conn.as_mut(), &state, &limits, &mut watch)).await;
    } else {
        state.head_wait_begins();
        http1(io, ctx, l, tls, &state, limits, lot).await
    }
}

/// Serves a parked connection again, from a task of its own, now that its next bytes
/// came (see `park`).
pub(super) fn resume(p: Parked, lot: Arc<Lot>) {
    tokio::spawn(async move {
        // Written into its box: the task holds a pointer (see `listener::accept_loop`).
        let fut = Box::write(Box::new_uninit(), serve_parked(p, lot));
        Box::into_pin(fut).await;
    });
}

async fn serve_parked(p: Parked, lot: Arc<Lot>) {
    let Some(l) = p
        .ctx
        .store()
        .load()
        .listeners
        .get(p.ctx.listener())
        .cloned()
    else {
        return;
    };
    let ctx = Arc::new(p.ctx.resume());
    let state = ConnState::resumed(p.head_since);
    let limits = Limits::of(&l, true);
    match p.socket {
        Socket::Plain(s) => {
            let Ok(tcp) = tokio::net::TcpStream::from_std(s) else {
                return;
            };
            let io = Rewind::new(
                Activity::new(ClientStream::plain(tcp), state.clone()),
                p.begun,
            );
            http1(io, ctx, &l, false, &state, limits, Some(lot)).await
        }
        Socket::Tls(mut tls) => {
            if tls.get_mut().0.attach().is_err() {
                return;
            }
            let io = Rewind::new(Activity::new(tls, state.clone()), p.begun);
            http1(io, ctx, &l, true, &state, limits, Some(lot)).await
        }
    }
}

/// Serves HTTP/1 requests on `io` until the connection closes or goes idle; an idle one
/// is parked in `lot`.
async fn http1<I>(
    io: Rewind<Activity<I>>,
    ctx: Arc<ConnCtx>,
    l: &ListenerRt,
    tls: bool,
    state: &Arc<ConnState>,
    limits: Limits,
    lot: Option<Arc<Lot>>,
) where
    I: Park + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut watch = ctx.drain.clone();
    let st = state.clone();
    let conn_ctx = ctx.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let open = Open::enter(&st);
        let unread = if http_body::Body::is_end_stream(req.body()) {
            if super::edge::client_closes(&req) {
                st.client_done();
            }
            None
        } else {
            Some(BodyUnread::new(&st))
        };
        let req = req.map(|b| ClientBody::Http1(Hyper::marked(b, unread)));
        Counted::new(open, proxy::handle(req, conn_ctx.clone()))
    });
    // Boxed: the task keeps no room for it once the connection is parked.
    let mut conn = Box::pin(
        http1_builder(l, tls)
            .serve_connection(TokioIo::new(io.watching(state.clone())), svc)
            .with_upgrades(),
    );
    let idle_for = match Box::pin(drive(conn.as_mut(), state, &limits, &mut watch)).await {
        Ended::Closed => return,
        Ended::Idle(idle_for) => idle_for,
    };
    let (Some(parts), Some(lot)) = (Pin::into_inner(conn).into_parts(), lot) else {
        return;
    };
    let http1::Parts {
        io,
        read_buf,
        service,
        ..
    } = parts;
    // It holds a reference to the context, which the lot takes over.
    drop(service);
    let (io, rest) = io.into_inner().into_parts();
    // A head begun but not finished: kept, in a buffer of its own size.
    let begun = if read_buf.is_empty() {
        rest
    } else {
        bytes::Bytes::from([&read_buf[..], &rest[..]].concat())
    };
    let now = Instant::now();
    let idle_end = now + limits.idle.saturating_sub(idle_for);
    let until = state
        .head_deadline(limits.header_read)
        .map_or(idle_end, |head| head.min(idle_end));
    // No request holds the context while the connection is idle.
    let Ok(ctx) = Arc::try_unwrap(ctx) else {
        return;
    };
    let ctx = ctx.park();
    let Ok(socket) = io.into_inner().detach() else {
        return;
    };
    let parked = Parked {
        socket,
        begun,
        ctx,
        head_since: state.head_since().unwrap_or(now),
        until,
    };
    lot.park(parked);
}

/// The first bytes of a connection, read to choose its protocol.
#[derive(Default)]
struct Sniffed {
    /// Everything the reads took: often the whole first request, so that hyper's first
    /// read is served from here and costs no syscall of its own.
    bytes: bytes::Bytes,
    http2: bool,
    /// They began as the HTTP/2 preface does but were not it.
    bad_preface: bool,
}

/// Reads a connection's first bytes until they are the whole HTTP/2 preface or not it.
/// On an HTTP/2-only connection (ALPN `h2`) anything else is a bad preface; on a
/// plain one it is HTTP/1, unless the bytes went on as the preface past its request
/// line, which no HTTP/1 request does. `None` when the client closes first.
async fn sniff<I: AsyncRead + Unpin>(io: &mut I, h2_only: bool) -> Option<Sniffed> {
    /// `PRI * HTTP/2.0\r\n\r\n`: an HTTP/1 head cannot go on past this.
    const PAST_REQUEST_LINE: usize = 18;
    let mut got = Vec::new();
    loop {
        let n = read_some(io, &mut got).await.ok()?;
        if n == 0 {
            return None;
        }
        let differs = got.iter().zip(h2::PREFACE).position(|(a, b)| a != b);
        let mut s = Sniffed::default();
        if let Some(at) = differs {
            s.bad_preface = h2_only || at >= PAST_REQUEST_LINE;
        } else if got.len() >= h2::PREFACE.len() {
            s.http2 = true;
        } else {
            continue;
        }
        s.bytes = got.into();
        return Some(s);
    }
}

/// One read of as much as a stack buffer takes, appended to `out`. The buffer lives for
/// one poll only, so the connection's future keeps no room for it.
async fn read_some<I: AsyncRead + Unpin>(io: &mut I, out: &mut Vec<u8>) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut rb = tokio::io::ReadBuf::uninit(&mut buf);
        std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
        out.extend_from_slice(rb.filled());
        Poll::Ready(Ok(rb.filled().len()))
    })
    .await
}

/// The connection timeouts the driver enforces, and whether an idle HTTP/1 connection
/// may be parked (its listener has a lot).
struct Limits {
    idle: Duration,
    header_read: Duration,
    parks: bool,
}

impl Limits {
    fn of(l: &ListenerRt, parks: bool) -> Limits {
        Limits {
            idle: l.spec.idle_timeout,
            header_read: l.spec.header_read_timeout,
            parks,
        }
    }
}

/// A connection the driver can wind down: stop taking requests, finish those open.
trait Graceful {
    /// Whether an idle connection may be taken down to park it (HTTP/1: see `park`).
    const PARKS: bool;
    fn graceful(self: Pin<&mut Self>);
}

/// Why [`drive`] returned.
enum Ended {
    /// The connection is over.
    Closed,
    /// The connection has been idle this long and its hyper connection has shut down,
    /// leaving the socket open: park it.
    Idle(Duration),
}

/// The longest a driver's tick: an idle HTTP/1 connection is parked on the first tick
/// that finds it has been silent since the one before.
const TICK: Duration = Duration::from_secs(1);

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const PARKS: bool = true;
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, F, Fut> Graceful for H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<ClientBody>) -> Fut + Unpin,
    Fut: Future<Output = Result<http::Response<ResponseBody>, Infallible>> + Unpin,
{
    const PARKS: bool = false;
    fn graceful(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown();
    }
}

/// Runs a connection to its end: closes it when idle (no byte either way for the idle
/// timeout, checked every tick, and no request in progress) or when an HTTP/1 request
/// head is not in within `header_read`, shuts it down gracefully when the listener
/// drains, and takes an idle HTTP/1 connection down for parking.
async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    state: &ConnState,
    limits: &Limits,
    watch: &mut Watch,
) -> Ended
where
    C: Future<Output = Result<(), E>> + Graceful,
    E: std::fmt::Display,
{
    let period = (limits.idle / 4).min(TICK).max(Duration::from_millis(1));
    let mut next_tick = Instant::now() + period;
    let mut head_on = !state.head_clock_off();
    // When the head wait now running must end, or when to look again.
    let head_due = |now: Instant| {
        state
            .head_deadline(limits.header_read)
            .unwrap_or(now + limits.header_read)
    };
    // One timer for the tick and every head wait, at whichever is due first; and one
    // drain future. Both are made once and gated: the connection's own wake-ups
    // (every read and write) do not poll them (see `wake_gate`). A connection that
    // lives for one request pays for one timer, not two and a gate each per tick.
    let first = if head_on {
        next_tick.min(head_due(Instant::now()))
    } else {
        next_tick
    };
    let mut clock = Gated::new(tokio::time::sleep_until(first));
    let mut drained = Gated::new(watch.signaled());
    let (mut last, mut still, mut draining, mut waiting_first) = (0, 0u32, false, false);
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return Ended::Closed;
            }
            _ = &mut drained, if !draining => {
                draining = true;
                // An HTTP/1 connection that has not had its first request is not idle:
                // the client is sending it. It gets that request served (with a close),
                // within `header_read`; shutting down now would drop it unread.
                waiting_first = head_on && !state.served_any();
                if !waiting_first {
                    conn.as_mut().graceful();
                }
            }
            _ = state.first_request(), if waiting_first => {
                waiting_first = false;
                conn.as_mut().graceful();
            }
            _ = &mut clock => {
                let now = Instant::now();
                if head_on {
                    if state.head_deadline(limits.header_read).is_some_and(|d| d <= now) {
                        tracing::debug!("no request head within header_read: closing");
                        return Ended::Closed;
                    }
                    head_on = !state.head_clock_off();
                }
                if now >= next_tick {
                    next_tick = now + period;
                    let moved = state.activity();
                    still = if moved == last && !state.busy() { still + 1 } else { 0 };
                    last = moved;
                    let idle_for = period * still;
                    if idle_for >= limits.idle {
                        tracing::debug!("closing idle client connection");
                        return Ended::Closed;
                    }
                    if C::PARKS && limits.parks && still > 0 && !draining && state.parkable() {
                        if let Some(ended) = take_down(conn.as_mut(), state, idle_for).await {
                            return ended;
                        }
                    }
                }
                let due = if head_on { next_tick.min(head_due(now)) } else { next_tick };
                clock.rearm().reset(due);
            }
        }
    }
}

/// Shuts an idle HTTP/1 connection's hyper side down for parking, leaving the socket
/// open. hyper closes an idle connection at once on a graceful shutdown, so one poll
/// tells: still pending means a request was in progress after all (a body still
/// coming in), and the connection goes on, to close after that request.
async fn take_down<C, E>(
    mut conn: Pin<&mut C>,
    state: &ConnState,
    idle_for: Duration,
) -> Option<Ended>
where
    C: Future<Output = Result<(), E>> + Graceful,
{
    state.set_parking(true);
    conn.as_mut().graceful();
    let polled = std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx))).await;
    match polled {
        Poll::Ready(Ok(())) => Some(Ended::Idle(idle_for)),
        Poll::Ready(Err(_)) => Some(Ended::Closed),
        Poll::Pending => {
            state.set_parking(false);
            None
        }
    }
}

fn http1_builder(l: &ListenerRt, tls: bool) -> http1::Builder {
    let limits = &l.spec.limits;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // `drive` enforces header_read with one timer per connection (see conn_state).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_size.max(8192))
        .max_headers(limits.max_headers)
        // Behind TLS one flattened write is cheaper than writev (PERFORMANCE.md).
        .writev(!tls)
        // No read while a request waits on its answer: the close watch looks for the
        // client leaving instead, without a new read buffer a request (see `rewind`).
        .half_close(true);
    b
}

/// A request's future with its [`Open`] mark, which the response body then holds
/// until it ends. A pointer and a mark: cheap to move, and `Unpin`.
pub struct Counted {
    open: Option<Open>,
    fut: proxy::Handling,
}

impl Counted {
    fn new(open: Open, fut: proxy::Handling) -> Counted {
        Counted {
            open: Some(open),
            fut,
        }
    }
}

impl Future for Counted {
    type Output = Result<http::Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Ok(mut resp) = std::task::ready!(this.fut.as_mut().poll(cx));
        if let Some(open) = this.open.take() {
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                open.upgraded();
            }
            if let Some(answered) = open.answered() {
                resp.body_mut().hold(answered);
            }
        }
        Poll::Ready(Ok(resp))
    }
}
