//! Upstream connections: the [`Connector`] (TCP, optional TLS, and for HTTP/2 hyper's
//! handshake) and the per-endpoint [`Pool`].
//!
//! HTTP/1.1 runs on Gatehouse's own client ([`crate::http::h1::conn`]): a pooled
//! [`Wire`] is lent to one request, driven from the request's task, and goes back to the
//! pool when its response body has been read exactly to its end. HTTP/2 uses hyper's
//! connection handle, shared by all requests to the endpoint.

use crate::body::{Hyper, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::http::conn_count::{Closed, ConnCount, OpenGuard};
use crate::http::h1::conn::{self, H1Body, Io, NoResponse, Wire};
use crate::upstream::Endpoint;
use futures_util::future::{Either, FutureExt as _};
use gatehouse_config::spec::{PoolSpec, UpstreamProtocol};
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// How to open connections to a group's endpoints.
#[derive(Clone)]
pub struct Connector {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub tls: Option<UpstreamTls>,
}

/// TLS towards an upstream: the rustls client and the name to send and verify.
#[derive(Clone)]
pub struct UpstreamTls {
    pub connector: TlsConnector,
    /// Fixed SNI; `None` uses each endpoint's host.
    pub sni: Option<ServerName<'static>>,
}

/// Idle and shared connections of one endpoint.
pub struct Pool {
    spec: PoolSpec,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
    /// Connections open, opened and closed (see `conn_count`).
    count: Arc<ConnCount>,
}

struct Idle {
    wire: Box<Wire>,
    since: Instant,
}

/// A response body from an upstream, by protocol.
pub enum Received {
    H1(H1Body),
    H2(Hyper),
}

/// An upstream's response.
pub type Sent = Response<Received>;

// === impl Pool ===

impl Pool {
    pub fn new(spec: PoolSpec) -> Self {
        Pool {
            spec,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            count: Arc::default(),
        }
    }

    /// Open connections to this endpoint.
    pub fn open(&self) -> usize {
        self.count.open()
    }

    /// Connections opened and closed, by why.
    pub fn count(&self) -> &ConnCount {
        &self.count
    }

    /// Idle HTTP/1.1 connections still usable (those the upstream closed are let go).
    pub fn idle(&self) -> usize {
        self.sweep();
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// An idle connection that can still carry a request, and how long it was idle.
    /// The most recently used comes first: it is the least likely to have been closed
    /// by the upstream's keep-alive timeout.
    fn take(&self) -> Option<(Box<Wire>, Duration)> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut c) = idle.pop() {
            let idle_for = c.since.elapsed();
            if c.unusable(idle_for, self.spec.idle_timeout) {
                continue;
            }
            return Some((c.wire, idle_for));
        }
        None
    }

    /// Takes back a connection whose exchange ended exactly.
    pub(crate) fn put(&self, mut wire: Box<Wire>) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.spec.max_idle_per_endpoint {
                idle.push(Idle {
                    wire,
                    since: Instant::now(),
                });
                return;
            }
        }
        wire.close_as(Closed::PoolFull);
    }

    /// Closes idle connections past their idle timeout or closed by the upstream.
    pub fn sweep(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let max = self.spec.idle_timeout;
            idle.retain_mut(|c| !c.unusable(c.since.elapsed(), max));
        }
    }

    /// Closes every idle connection (a drained endpoint).
    pub fn close_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            for c in idle.iter_mut() {
                c.wire.close_as(Closed::Drained);
            }
            idle.clear();
        }
        if let Ok(mut h2) = self.h2.lock() {
            *h2 = None;
        }
    }

    /// Whether a request could be sent without opening a connection.
    pub fn has_reusable(&self) -> bool {
        self.idle.lock().is_ok_and(|v| !v.is_empty())
            || self
                .h2
                .lock()
                .is_ok_and(|g| g.as_ref().is_some_and(|tx| !tx.is_closed()))
    }

    fn at_capacity(&self) -> bool {
        let max = self.spec.max_connections_per_endpoint;
        max != 0 && self.open() >= max
    }
}

// === impl Idle ===

impl Idle {
    /// Whether a pooled connection, idle for `idle_for`, can no longer carry a request:
    /// idle past `max`, or closed by the upstream. It is marked with why, to be counted
    /// when dropped.
    fn unusable(&mut self, idle_for: Duration, max: Duration) -> bool {
        let why = if idle_for >= max {
            Closed::IdleTimeout
        } else if self.wire.is_stale() {
            Closed::UpstreamClosed
        } else {
            return false;
        };
        self.wire.close_as(why);
        true
    }
}

// === impl Received ===

impl Received {
    /// Puts an HTTP/1.1 connection back in its pool once its body ended exactly.
    pub fn release(&mut self) {
        if let Received::H1(b) = self {
            b.release();
        }
    }
}

crate::body::delegate_body!(Received: H1, H2);

// === impl Connector ===

/// A connection ready to carry one request (HTTP/1.1) or a handle on a shared one (HTTP/2).
pub enum Lease {
    /// With how long it sat in the pool; `None` for a new connection.
    H1(Box<Wire>, Option<Duration>),
    H2(http2::SendRequest<UpstreamBody>),
}

/// A pooled connection idle at least this long may have been closed by the upstream
/// (its keep-alive timeout) just as a request goes out on it: a bodiless idempotent
/// request sent on one keeps a copy, to send again on a new connection if the old one
/// breaks before any response (see `exchange`). Connections reused sooner are not
/// worth the copy.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

impl Lease {
    /// Whether the lease is a pooled HTTP/1.1 connection that may have gone stale.
    pub fn may_be_stale(&self) -> bool {
        matches!(self, Lease::H1(_, Some(idle)) if *idle >= STALE_AFTER)
    }
}

/// Whether an upstream error means the connection broke before any response: what a
/// stale pooled connection does when the upstream closed it as the request went out.
pub fn broke_before_response(e: &ProxyError) -> bool {
    let Some(src) = e.source.as_deref() else {
        return false;
    };
    if crate::body::find_cause::<NoResponse>(src).is_some() {
        return true;
    }
    let Some(h) = crate::body::find_cause::<hyper::Error>(src) else {
        return false;
    };
    h.is_incomplete_message()
        || h.is_canceled()
        || crate::body::find_cause::<std::io::Error>(h).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        })
}

impl Connector {
    /// Gets a connection to `ep`: an idle pooled one when there is one, else a new one
    /// (within the connect timeout). Errors here are safe to retry on another endpoint.
    pub async fn lease(&self, ep: &Arc<Endpoint>) -> Result<Lease, ProxyError> {
        match self.protocol {
            UpstreamProtocol::Http1 => {
                if let Some((wire, idle)) = ep.pool.take() {
                    return Ok(Lease::H1(wire, Some(idle)));
                }
                if ep.pool.at_capacity() {
                    let msg = format!("endpoint {} is at its connection limit", ep.label);
                    return Err(ProxyError::new(ErrorKind::NoEndpoint, msg).retryable());
                }
                // Boxed: a connect is rare, and its future would otherwise swell every
                // request's future (copied whole on each request and task spawn).
                Ok(Lease::H1(Box::pin(self.connect_h1(ep)).await?, None))
            }
            UpstreamProtocol::Http2 => {
                let shared = ep
                    .pool
                    .h2
                    .lock()
                    .ok()
                    .and_then(|g| g.clone())
                    .filter(|tx| !tx.is_closed());
                let mut tx = match shared {
                    Some(tx) => tx,
                    None => {
                        let tx = Box::pin(self.connect_h2(ep)).await?;
                        if let Ok(mut g) = ep.pool.h2.lock() {
                            *g = Some(tx.clone());
                        }
                        tx
                    }
                };
                tx.ready().await.map_err(|e| {
                    ProxyError::new(
                        ErrorKind::UpstreamConnect,
                        "upstream HTTP/2 connection closed",
                    )
                    .with_source(e)
                    .retryable()
                })?;
                Ok(Lease::H2(tx))
            }
        }
    }

    /// Sends `req` on a lease and reads the response head, by `until` if given (the
    /// error then has a [`conn::TimedOut`] source). The request is handed to the
    /// connection before the returned future exists, so the future holds no copy of it:
    /// it is part of every request's future (an async fn keeps room for each argument
    /// for its whole life, rust-lang/rust#62958).
    pub fn send(
        &self,
        ep: &Arc<Endpoint>,
        lease: Lease,
        req: Request<UpstreamBody>,
        until: Option<Instant>,
    ) -> impl Future<Output = Result<Sent, ProxyError>> + Send + 'static {
        match lease {
            Lease::H1(wire, _) => {
                Either::Left(conn::send(wire, req, ep, until).map(|r| Ok(r?.map(Received::H1))))
            }
            // Boxed: hyper's future for it and its timeout are about 800 bytes, which
            // every HTTP/1 request's future would otherwise make room for.
            Lease::H2(mut tx) => {
                let sent = tx.send_request(req);
                Either::Right(Box::pin(h2_response(sent, tx, until)))
            }
        }
    }

    /// Sends a request on a new connection: one a pooled connection closed under.
    pub async fn resend_h1(
        &self,
        ep: &Arc<Endpoint>,
        req: Request<UpstreamBody>,
        until: Option<Instant>,
    ) -> Result<Sent, ProxyError> {
        let wire = self.connect_h1(ep).await?;
        Ok(conn::send(wire, req, ep, until).await?.map(Received::H1))
    }

    /// A new connection, outside the pool (health checks).
    pub async fn fresh(&self, ep: &Arc<Endpoint>) -> Result<Lease, ProxyError> {
        Ok(match self.protocol {
            UpstreamProtocol::Http1 => Lease::H1(self.connect_h1(ep).await?, None),
            UpstreamProtocol::Http2 => Lease::H2(self.connect_h2(ep).await?),
        })
    }

    /// Opens a connection (TCP, and TLS when the group uses it) and closes it again.
    pub async fn reach(&self, ep: &Endpoint) -> Result<(), ProxyError> {
        self.connect_io(ep).await.map(drop)
    }

    async fn connect_h1(&self, ep: &Arc<Endpoint>) -> Result<Box<Wire>, ProxyError> {
        let io = self.connect_io(ep).await?;
        Ok(Wire::new(io, ep.pool.count.clone()))
    }

    async fn connect_h2(
        &self,
        ep: &Arc<Endpoint>,
    ) -> Result<http2::SendRequest<UpstreamBody>, ProxyError> {
        let io = self.connect_io(ep).await?;
        handshake_h2(TokioIo::new(io), ep.pool.count.clone()).await
    }

    /// TCP connect (and TLS handshake) within the connect timeout.
    async fn connect_io(&self, ep: &Endpoint) -> Result<Io, ProxyError> {
        let fut = async {
            let addr = resolve(ep).await?;
            let tcp = TcpStream::connect(addr).await.map_err(|e| {
                ProxyError::new(
                    ErrorKind::UpstreamConnect,
                    format!("connect to {} failed", ep.label),
                )
                .with_source(e)
                .retryable()
            })?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Io::Plain(tcp));
            };
            let name = match &tls.sni {
                Some(n) => n.clone(),
                None => ServerName::try_from(ep.spec.host.clone()).map_err(|e| {
                    ProxyError::new(
                        ErrorKind::UpstreamConnect,
                        format!("`{}` is not a TLS server name", ep.spec.host),
                    )
                    .with_source(e)
                })?,
            };
            let s = tls.connector.connect(name, tcp).await.map_err(|e| {
                ProxyError::new(
                    ErrorKind::UpstreamConnect,
                    format!("TLS handshake with {} failed", ep.label),
                )
                .with_source(e)
                .retryable()
            })?;
            Ok(Io::Tls(Box::new(s)))
        };
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ProxyError::new(
                ErrorKind::UpstreamTimeout,
                format!("connect to {} timed out", ep.label),
            )
            .retryable()),
        }
    }
}

pub(crate) async fn resolve(ep: &Endpoint) -> Result<SocketAddr, ProxyError> {
    if let Some(a) = ep.addr {
        return Ok(a);
    }
    let fail = |msg: String| ProxyError::new(ErrorKind::UpstreamConnect, msg).retryable();
    let mut addrs = tokio::net::lookup_host((ep.spec.host.as_str(), ep.spec.port))
        .await
        .map_err(|e| fail(format!("cannot resolve {}: {e}", ep.spec.host)))?;
    addrs
        .next()
        .ok_or_else(|| fail(format!("{} has no address", ep.spec.host)))
}

async fn handshake_h2<I>(
    io: I,
    count: Arc<ConnCount>,
) -> Result<http2::SendRequest<UpstreamBody>, ProxyError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .handshake(io)
        .await
        .map_err(|e| {
            ProxyError::new(ErrorKind::UpstreamConnect, "HTTP/2 handshake failed")
                .with_source(e)
                .retryable()
        })?;
    let guard = OpenGuard::new(count, Closed::Http2Ended);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
        drop(guard);
    });
    Ok(tx)
}

/// The response to a request sent on an HTTP/2 connection, by `until` if given. The
/// connection's handle is kept until the response comes, as when the request was sent
/// from inside the future.
async fn h2_response(
    sent: impl Future<Output = hyper::Result<Response<hyper::body::Incoming>>>,
    _tx: http2::SendRequest<UpstreamBody>,
    until: Option<Instant>,
) -> Result<Sent, ProxyError> {
    let resp = match until {
        Some(t) => tokio::time::timeout_at(t, sent)
            .await
            .map_err(|_| conn::timed_out())?,
        None => sent.await,
    };
    Ok(resp
        .map_err(response_error)?
        .map(|b| Received::H2(Hyper::new(b))))
}

/// Maps a failure after the request was handed to hyper: a body over its limit is the
/// client's 413; everything else is the upstream's 502.
fn response_error(e: hyper::Error) -> ProxyError {
    if crate::body::find_cause::<crate::body::BodyTooLarge>(&e).is_some() {
        return ProxyError::new(ErrorKind::PayloadTooLarge, "request body too large")
            .with_source(e);
    }
    let kind = if e.is_user() {
        ErrorKind::BadRequest
    } else {
        ErrorKind::UpstreamProtocol
    };
    let ctx = if e.is_user() {
        "request body failed"
    } else {
        "upstream did not send a valid response"
    };
    ProxyError::new(kind, ctx).with_source(e)
}
