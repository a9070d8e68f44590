//! The PROXY protocol (v1 text, v2 binary) on both sides, parsed and encoded by the `ppp`
//! crate: [`accept`] reads the header a trusted balancer in front sends and yields the
//! real client address; [`ClientStream`] replays the bytes read past the header and, for
//! peers that are not trusted, refuses a connection that opens with a PROXY header (so
//! no one can forge their address); [`encode`] writes the header sent to upstreams.
//!
//! Used by `listener` for every listener with `proxy_protocol = true` (HTTP and L4), and
//! by `l4` for upstreams with `proxy_protocol = "v1" | "v2"`. Depends on nothing above it.

use gatehouse_config::spec::ProxyProtocolVersion;
use ppp::v2;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest header accepted. v1 is at most 107 bytes; v2 may carry TLVs (cloud
/// balancers add a few dozen bytes), but nothing legitimate comes near this.
const MAX_HEADER: usize = 4096;
const V1_SIG: &[u8] = b"PROXY ";
const V2_SIG: &[u8] = v2::PROTOCOL_PREFIX;

/// A client connection as the rest of the gateway reads it: the socket, with any bytes
/// already read past a PROXY header served first.
pub struct ClientStream {
    inner: Sock,
    /// Bytes read ahead of the consumer, served before the socket is read again.
    pending: Vec<u8>,
    at: usize,
    /// An untrusted peer on a PROXY listener: its first bytes are held back until they
    /// show they do not begin a PROXY header.
    guard: bool,
}

/// The socket: in tokio's reactor while the connection is served, out of it while the
/// connection is parked (see `http::park`).
enum Sock {
    Live(TcpStream),
    Parked(std::net::TcpStream),
    /// A move between the two failed: the socket is gone, and the connection with it.
    Gone,
}

/// Reads and writes on a parked or lost socket fail: nothing should try them.
fn not_live() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the socket is parked")
}

/// What the PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// The client's address (the peer's own when the header names none, as for `LOCAL`
    /// health checks and `UNKNOWN`).
    pub client: SocketAddr,
    /// The address the client connected to, when the header names one.
    pub local: Option<SocketAddr>,
}

/// Why a connection was refused before anything was served.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("no PROXY header within the header-read timeout")]
    Timeout,
    #[error("the connection does not open with a PROXY header")]
    Missing,
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error(transparent)]
    Io(#[from] io::Error),
}

// === impl ClientStream ===

impl ClientStream {
    /// A stream read as it comes (no PROXY protocol on its listener).
    pub fn plain(inner: TcpStream) -> Self {
        ClientStream {
            inner: Sock::Live(inner),
            pending: Vec::new(),
            at: 0,
            guard: false,
        }
    }

    /// A stream from a peer that may not send a PROXY header: reading it fails if it
    /// opens with one.
    pub fn guarded(inner: TcpStream) -> Self {
        ClientStream {
            guard: true,
            ..ClientStream::plain(inner)
        }
    }

    /// The address the client reached.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Sock::Live(s) => s.local_addr(),
            Sock::Parked(s) => s.local_addr(),
            Sock::Gone => Err(not_live()),
        }
    }

    fn live(&mut self) -> io::Result<&mut TcpStream> {
        match &mut self.inner {
            Sock::Live(s) => Ok(s),
            _ => Err(not_live()),
        }
    }

    /// Takes the socket out of tokio's reactor, for a parked connection whose stream
    /// stays whole around it (TLS).
    pub fn detach(&mut self) -> io::Result<()> {
        if let Sock::Live(s) = std::mem::replace(&mut self.inner, Sock::Gone) {
            self.inner = Sock::Parked(s.into_std()?);
        }
        Ok(())
    }

    /// Puts a detached socket back in tokio's reactor.
    pub fn attach(&mut self) -> io::Result<()> {
        if let Sock::Parked(s) = std::mem::replace(&mut self.inner, Sock::Gone) {
            self.inner = Sock::Live(TcpStream::from_std(s)?);
        }
        Ok(())
    }

    /// The socket of a detached stream, for the lot's epoll set.
    pub fn parked_fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        match &self.inner {
            Sock::Parked(s) => Ok(std::os::fd::AsFd::as_fd(s)),
            _ => Err(not_live()),
        }
    }

    /// The bare socket out of tokio's reactor, for a parked plain connection. Only a
    /// stream with nothing held back can be parked so: its reads are the socket's.
    pub fn into_parked(mut self) -> io::Result<std::net::TcpStream> {
        if self.guard || self.holds_bytes() {
            return Err(io::Error::other("the stream holds bytes"));
        }
        self.detach()?;
        match self.inner {
            Sock::Parked(s) => Ok(s),
            _ => Err(not_live()),
        }
    }

    /// Whether bytes read ahead are waiting to be read.
    pub fn holds_bytes(&self) -> bool {
        self.at < self.pending.len()
    }

    /// Reads until the held bytes show whether they begin a PROXY header.
    fn poll_guard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match starts_header(&self.pending) {
                Some(true) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "PROXY header from a peer not in global.trusted_proxies",
                    )))
                }
                Some(false) => {
                    self.guard = false;
                    return Poll::Ready(Ok(()));
                }
                None => {}
            }
            let mut tmp = [0u8; 64];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(self.live()?).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // End of stream: whatever came is not a header.
                self.guard = false;
                return Poll::Ready(Ok(()));
            }
            self.pending.extend_from_slice(rb.filled());
        }
    }
}

/// `Some(true)` when `buf` begins with a PROXY signature, `Some(false)` when it cannot,
/// `None` while it is too short to tell.
fn starts_header(buf: &[u8]) -> Option<bool> {
    let is_prefix_of = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if buf.starts_with(V1_SIG) || buf.starts_with(V2_SIG) {
        Some(true)
    } else if is_prefix_of(V1_SIG) || is_prefix_of(V2_SIG) {
        None
    } else {
        Some(false)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.guard {
            ready!(this.poll_guard(cx))?;
        }
        if this.at < this.pending.len() {
            let n = buf.remaining().min(this.pending.len() - this.at);
            buf.put_slice(&this.pending[this.at..this.at + n]);
            this.at += n;
            if this.at == this.pending.len() {
                this.pending = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(this.live()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().live()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().live()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Sock::Live(s) => s.is_write_vectored(),
            _ => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().live()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().live()?).poll_shutdown(cx)
    }
}

/// Reads the PROXY header a trusted peer must open with, within `timeout`. Returns the
/// stream (replaying any bytes read past the header) and what the header said.
pub async fn accept(
    mut inner: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<(ClientStream, Proxied), AcceptError> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            if let Some(done) = parse(&buf, peer)? {
                return Ok(done);
            }
            if buf.len() >= MAX_HEADER {
                return Err(AcceptError::TooLong);
            }
            let mut tmp = [0u8; 512];
            // Never read far past the header: the rest belongs to the client protocol.
            let want = tmp.len().min(MAX_HEADER - buf.len());
            let n = inner.read(&mut tmp[..want]).await?;
            if n == 0 {
                return Err(AcceptError::Missing);
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    };
    let (used, proxied) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| AcceptError::Timeout)??;
    let mut stream = ClientStream::plain(inner);
    stream.pending = buf.split_off(used);
    Ok((stream, proxied))
}

/// `Ok(None)` while the header is incomplete; `Ok(Some((header length, result)))` once
/// it is whole.
pub fn parse(buf: &[u8], peer: SocketAddr) -> Result<Option<(usize, Proxied)>, AcceptError> {
    use ppp::PartialResult;
    match starts_header(buf) {
        None => return Ok(None),
        Some(false) => return Err(AcceptError::Missing),
        Some(true) => {}
    }
    let own = Proxied {
        client: peer,
        local: None,
    };
    if buf.starts_with(V1_SIG) {
        let h = ppp::v1::Header::try_from(buf);
        if h.is_incomplete() {
            return Ok(None);
        }
        let h = h.map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let p = match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => Proxied {
                client: SocketAddr::new(a.source_address.into(), a.source_port),
                local: Some(SocketAddr::new(
                    a.destination_address.into(),
                    a.destination_port,
                )),
            },
            ppp::v1::Addresses::Tcp6(a) => Proxied {
                client: SocketAddr::new(a.source_address.into(), a.source_port),
                local: Some(SocketAddr::new(
                    a.destination_address.into(),
                    a.destination_port,
                )),
            },
            ppp::v1::Addresses::Unknown => own,
        };
        return Ok(Some((h.header.len(), p)));
    }
    let h = v2::Header::try_from(buf);
    if h.is_incomplete() {
        return Ok(None);
    }
    let h = h.map_err(|e| AcceptError::Invalid(e.to_string()))?;
    let p = match (h.command, h.addresses) {
        // LOCAL: the balancer's own connection (a health check); keep its address.
        (v2::Command::Local, _) => own,
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Proxied {
            client: SocketAddr::new(a.source_address.into(), a.source_port),
            local: Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        },
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Proxied {
            client: SocketAddr::new(a.source_address.into(), a.source_port),
            local: Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        },
        (v2::Command::Proxy, _) => own,
    };
    Ok(Some((h.len(), p)))
}

/// The header to send an upstream for a connection from `client` to `local`.
pub fn encode(version: ProxyProtocolVersion, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = same_family(client, local);
    match version {
        ProxyProtocolVersion::V1 => ppp::v1::Addresses::from((client, local))
            .to_string()
            .into_bytes(),
        ProxyProtocolVersion::V2 => {
            v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Proxy,
                v2::Protocol::Stream,
                (client, local),
            )
            .build()
            // Building only fails when the header outgrows u16 lengths, which two
            // addresses never do; LOCAL (no addresses) is the safe fallback.
            .unwrap_or_else(|_| {
                v2::Builder::new(
                    v2::Version::Two | v2::Command::Local,
                    v2::Protocol::Unspecified | v2::AddressFamily::Unspecified,
                )
                .build()
                .unwrap_or_default()
            })
        }
    }
}

/// Both addresses in one family, as the header requires: IPv4-mapped IPv6 addresses
/// become IPv4, and an IPv4 address next to a true IPv6 one becomes mapped.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |s: SocketAddr| match s.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), s.port()),
            None => s,
        },
        IpAddr::V4(_) => s,
    };
    let (a, b) = (unmap(a), unmap(b));
    let map = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    match (a.is_ipv4(), b.is_ipv4()) {
        (true, false) => (map(a), b),
        (false, true) => (a, map(b)),
        _ => (a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn parses_v1_and_keeps_what_follows() {
        let buf = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\nGET / HTTP/1.1\r\n";
        let (n, p) = parse(buf, peer()).unwrap().unwrap();
        assert_eq!(&buf[n..], b"GET / HTTP/1.1\r\n");
        assert_eq!(p.client, "192.0.2.7:5555".parse().unwrap());
        assert_eq!(p.local, Some("198.51.100.1:443".parse().unwrap()));
    }

    #[test]
    fn partial_headers_wait_for_more() {
        assert!(parse(b"PRO", peer()).unwrap().is_none());
        assert!(parse(b"PROXY TCP4 192.0.2.7", peer()).unwrap().is_none());
        let v2 = encode(
            ProxyProtocolVersion::V2,
            "192.0.2.7:5555".parse().unwrap(),
            "198.51.100.1:443".parse().unwrap(),
        );
        assert!(parse(&v2[..20], peer()).unwrap().is_none());
    }

    #[test]
    fn v2_round_trips_through_encode() {
        let client: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
        let local: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mut v2 = encode(ProxyProtocolVersion::V2, client, local);
        let len = v2.len();
        v2.extend_from_slice(b"rest");
        let (n, p) = parse(&v2, peer()).unwrap().unwrap();
        assert_eq!(n, len);
        assert_eq!(p.client, client);
        assert_eq!(p.local, Some(local));
    }

    #[test]
    fn unknown_and_local_keep_the_peer() {
        let (_, p) = parse(b"PROXY UNKNOWN\r\n", peer()).unwrap().unwrap();
        assert_eq!(p.client, peer());
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified | v2::AddressFamily::Unspecified,
        )
        .build()
        .unwrap();
        let (_, p) = parse(&local, peer()).unwrap().unwrap();
        assert_eq!(p.client, peer());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n", peer()),
            Err(AcceptError::Missing)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 not-an-ip 198.51.100.1 1 2\r\n", peer()),
            Err(AcceptError::Invalid(_))
        ));
    }

    #[test]
    fn an_endless_v1_line_is_refused() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(parse(&long, peer()), Err(AcceptError::Invalid(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_trusted_peer_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        let r = accept(s, peer, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(AcceptError::Timeout)));
    }

    #[tokio::test]
    async fn a_v2_header_past_the_bound_is_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        // A v2 header announcing 10,000 bytes of addresses and TLVs.
        let mut bytes = V2_SIG.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0x27, 0x10]);
        bytes.extend(std::iter::repeat_n(0u8, 10_000));
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = client.write_all(&bytes).await;
            std::future::pending::<()>().await;
        });
        let r = accept(s, peer, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(AcceptError::TooLong)));
    }

    #[test]
    fn v1_encodes_mixed_families_as_one() {
        let client: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let local: SocketAddr = "[::ffff:198.51.100.1]:443".parse().unwrap();
        let h = encode(ProxyProtocolVersion::V1, client, local);
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n");
    }

    #[test]
    fn signature_prefixes() {
        assert_eq!(starts_header(b""), None);
        assert_eq!(starts_header(b"PROX"), None);
        assert_eq!(starts_header(b"PROXY "), Some(true));
        assert_eq!(starts_header(b"\x16\x03\x01"), Some(false));
        assert_eq!(starts_header(b"GET /"), Some(false));
        assert_eq!(starts_header(&V2_SIG[..5]), None);
        assert_eq!(starts_header(V2_SIG), Some(true));
    }
}
