//! Layer 4: raw TCP ([`tcp`]), UDP flows ([`udp`]) and TLS passthrough by SNI
//! ([`passthrough`]), balanced over the same [`UpstreamGroup`]s as HTTP routes and
//! counted on the same endpoints (in flight, requests, failures).
//!
//! This file holds what the TCP kinds share: the connect with fail-over (and the PROXY
//! header towards upstreams that want one), the byte pipe with its idle timeout, drain
//! and half-close, and the per-connection access line. Depends on `upstream`,
//! `proxy_protocol`, `access_log` and `drain`; nothing here knows about HTTP.

pub mod passthrough;
pub mod tcp;
pub mod udp;

use crate::access_log::{AccessLog, L4Record};
use crate::drain::Watch;
use crate::error::{ErrorKind, ProxyError};
use crate::upstream::endpoint::InFlight;
use crate::upstream::health::Outcome;
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::HashOn;
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where a layer-4 listener's connections go, compiled per generation.
pub enum L4Target {
    /// `tcp` and `udp`: one upstream.
    Group(Arc<UpstreamGroup>),
    /// `tls_passthrough`: an upstream per server name.
    Sni(passthrough::SniTable),
}

/// What one layer-4 connection needs from its generation, taken when it starts so
/// that it holds no whole snapshot for its lifetime.
pub struct Session {
    pub listener: Arc<str>,
    /// `tcp`, `tls_passthrough` or `udp`, for the access line.
    pub protocol: &'static str,
    /// The client (from a PROXY header when there was one) and the address it reached.
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub idle_timeout: Duration,
    /// Deadline for a ClientHello (passthrough).
    pub header_read_timeout: Duration,
    /// How long an open connection may go on once its listener drains.
    pub drain_timeout: Duration,
    pub log: Option<Arc<AccessLog>>,
    pub bytes: Arc<ByteCounters>,
    pub time: SystemTime,
    pub start: Instant,
}

/// Bytes from and to clients: the listener's metrics plus this connection's own count.
pub struct ByteCounters {
    pub received: Counter,
    pub sent: Counter,
}

/// One connection's byte counts.
#[derive(Default)]
pub struct Counts {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

/// How a piped connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// The listener drained and the drain timeout passed.
    Drained,
    /// A read or write failed (reset and the like).
    Error,
}

// === impl Session ===

impl Session {
    /// Writes the connection's access line, when the access log is on.
    pub fn log(
        &self,
        upstream: Option<&str>,
        endpoint: Option<&str>,
        sni: Option<&str>,
        counts: &Counts,
        error: Option<&str>,
    ) {
        let Some(log) = &self.log else { return };
        log.write_l4(&L4Record {
            time: self.time,
            client: self.client,
            protocol: self.protocol,
            listener: &self.listener,
            sni,
            upstream,
            endpoint,
            bytes_in: counts.received.load(Ordering::Relaxed),
            bytes_out: counts.sent.load(Ordering::Relaxed),
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            error,
        });
    }
}

/// The hash key a layer-4 connection carries: only the client IP exists below HTTP, so
/// any other `hash_on` picks freely.
pub fn hash_key(group: &UpstreamGroup, client: SocketAddr) -> Option<u64> {
    match group.spec.hash_on {
        Some(HashOn::ClientIp) => crate::upstream::lb::request_key(
            &HashOn::ClientIp,
            &http::HeaderMap::new(),
            None,
            client.ip(),
        ),
        _ => None,
    }
}

/// Connects to a healthy endpoint of `group` within its connect timeout, moving on to one
/// not yet tried when a connect fails (nothing has been sent, so this is always safe;
/// the failure counts towards outlier ejection), and
/// sends the PROXY header when the upstream wants one. The endpoint counts the
/// connection as in flight until the returned guard drops.
pub async fn connect(
    group: &UpstreamGroup,
    client: SocketAddr,
    local: SocketAddr,
) -> Result<(TcpStream, InFlight), ProxyError> {
    let key = hash_key(group, client);
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let (i, ep) = group.pick(&tried, key, None).map_err(|np| {
            ProxyError::new(ErrorKind::NoEndpoint, np.message).retry_after(np.retry_after)
        })?;
        let in_flight = ep.start();
        match connect_one(group, &ep, client, local).await {
            Ok(s) => {
                group.record(&ep, Outcome::Success);
                return Ok((s, in_flight));
            }
            Err(e) => {
                in_flight.failed();
                group.record(&ep, Outcome::Failure);
                tracing::debug!(endpoint = %ep.label, error = %e.message(), "layer-4 connect failed");
                tried.push(i);
                if tried.len() >= group.endpoints().len() {
                    return Err(e);
                }
            }
        }
    }
}

async fn connect_one(
    group: &UpstreamGroup,
    ep: &crate::upstream::Endpoint,
    client: SocketAddr,
    local: SocketAddr,
) -> Result<TcpStream, ProxyError> {
    let failed = |what: &str, e: io::Error| {
        ProxyError::new(
            ErrorKind::UpstreamConnect,
            format!("{what} {} failed", ep.label),
        )
        .with_source(e)
        .retryable()
    };
    let fut = async {
        let addr = crate::http::client::resolve(ep).await?;
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| failed("connect to", e))?;
        let _ = s.set_nodelay(true);
        if let Some(v) = group.spec.proxy_protocol {
            let header = crate::proxy_protocol::encode(v, client, local);
            s.write_all(&header)
                .await
                .map_err(|e| failed("PROXY header to", e))?;
        }
        Ok(s)
    };
    match tokio::time::timeout(group.spec.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::new(
            ErrorKind::UpstreamTimeout,
            format!("connect to {} timed out", ep.label),
        )
        .retryable()),
    }
}

/// Copies bytes both ways until both sides have closed. One side's FIN is passed on as
/// a write shutdown while the other direction keeps flowing (`copy::copy_both`).
/// Ends early when no byte moves for `idle_timeout`, `drain_timeout` after the
/// listener starts draining (a byte stream has no point at which closing is graceful),
/// or when its endpoint was drained and its grace ran out (`closing`).
pub async fn pipe<C>(
    client: C,
    mut upstream: TcpStream,
    s: &Session,
    counts: &Arc<Counts>,
    mut watch: Watch,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Counted {
        inner: client,
        counts: counts.clone(),
        metrics: s.bytes.clone(),
    };
    let copy = crate::copy::copy_both(&mut client, &mut upstream);
    tokio::pin!(copy);
    // Idle: no byte either way for `idle_timeout`, checked in quarters of it (the
    // client side sees every byte, so its counts tell whether anything moved).
    let quarter = s.idle_timeout / 4;
    let mut tick = tokio::time::interval_at(Instant::now() + quarter, quarter);
    let moved = || counts.received.load(Ordering::Relaxed) + counts.sent.load(Ordering::Relaxed);
    let (mut last, mut still) = (moved(), 0);
    let mut drain_at: Option<Instant> = None;
    loop {
        tokio::select! {
            r = &mut copy => {
                return match r {
                    Ok(_) => End::Closed,
                    Err(e) => {
                        tracing::debug!(error = %e, "layer-4 connection ended with an error");
                        End::Error
                    }
                };
            }
            _ = watch.signaled(), if drain_at.is_none() => {
                drain_at = Some(Instant::now() + s.drain_timeout);
            }
            _ = sleep_until_some(drain_at) => return End::Drained,
            _ = crate::upstream::endpoint::closed(&mut closing) => return End::Drained,
            _ = tick.tick() => {
                let now = moved();
                still = if now == last { still + 1 } else { 0 };
                last = now;
                if still >= 4 {
                    return End::Idle;
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The client side of a pipe, counting bytes into the connection and the listener.
struct Counted<C> {
    inner: C,
    counts: Arc<Counts>,
    metrics: Arc<ByteCounters>,
}

impl<C: AsyncRead + Unpin> AsyncRead for Counted<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.counts.received.fetch_add(n, Ordering::Relaxed);
            self.metrics.received.inc_by(n);
        }
        r
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Counted<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.counts.sent.fetch_add(n as u64, Ordering::Relaxed);
            self.metrics.sent.inc_by(n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
