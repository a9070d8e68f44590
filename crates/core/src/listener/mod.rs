//! Listeners: bind, accept with a per-listener connection limit, read the PROXY header
//! where configured, hand each connection to TLS and the HTTP server or to `l4`, and
//! reconcile the set on reload. New addresses are bound before a reload is committed (a
//! failed bind rejects the reload); unchanged listeners keep their sockets and
//! connections; removed ones stop accepting and drain. `udp` listeners bind a UDP socket
//! and hand it to `l4::udp`, which has no accept.

use crate::drain::{Drain, Watch};
use crate::http::park::Lot;
use crate::http::server::{self, Proto};
use crate::l4::{self, L4Target, Session};
use crate::proxy::ConnCtx;
use crate::proxy_protocol::{self, ClientStream, Proxied};
use crate::runtime::{ConfigStore, ListenerRt, Runtime};
use crate::upgrade::{Handed, Inherited};
use gatehouse_config::spec::{ListenerKind, ListenerSpec};
use prometheus_client::metrics::gauge::Gauge;
use socket2::{Domain, Socket as Socket2, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The running listeners, by name.
#[derive(Default)]
pub struct Listeners {
    active: Mutex<HashMap<String, Active>>,
}

struct Active {
    /// The address as configured (port 0 stays 0), to tell whether it changed.
    configured: SocketAddr,
    /// Bound as UDP: a listener moving between UDP and TCP needs a new socket.
    udp: bool,
    local: SocketAddr,
    drain: Drain,
    /// A second descriptor of the socket, to hand to a new binary (see `upgrade`).
    socket: Option<OwnedFd>,
}

/// A bound socket, TCP or UDP.
enum Socket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Sockets bound for a reload that has not been committed yet.
pub struct Bound(Vec<(String, SocketAddr, Socket)>);

// === impl Listeners ===

impl Listeners {
    /// Binds every listener of `snap` that is new or whose address changed, taking the
    /// socket an old process handed over (see `upgrade`) when it has one just like it.
    pub fn bind(
        &self,
        snap: &Runtime,
        inherited: Option<&Inherited>,
    ) -> Result<Bound, Vec<String>> {
        let active = self
            .active
            .lock()
            .map_err(|_| vec!["listener table poisoned".to_string()])?;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (name, l) in &snap.listeners {
            let udp = l.spec.kind.is_udp();
            if active
                .get(name)
                .is_some_and(|a| a.configured == l.spec.addr && a.udp == udp)
            {
                continue;
            }
            let taken = inherited.and_then(|i| i.take(Some(name), l.spec.addr, udp));
            let sock = match (taken, udp) {
                (Some(fd), true) => {
                    let s = std::net::UdpSocket::from(fd);
                    s.set_nonblocking(true).map(|()| Socket::Udp(s))
                }
                (Some(fd), false) => adopt(fd).map(Socket::Tcp),
                (None, true) => bind_udp(l.spec.addr).map(Socket::Udp),
                (None, false) => bind(l.spec.addr).map(Socket::Tcp),
            };
            match sock {
                Ok(sock) => out.push((name.clone(), l.spec.addr, sock)),
                Err(e) => errors.push(format!(
                    "listener `{name}`: cannot bind {}: {e}",
                    l.spec.addr
                )),
            }
        }
        if errors.is_empty() {
            Ok(Bound(out))
        } else {
            Err(errors)
        }
    }

    /// Starts accepting on newly bound sockets and drains listeners `snap` no longer has
    /// (or whose address moved). Returns the drains of the retired ones.
    pub fn commit(&self, bound: Bound, snap: &Runtime, store: &Arc<ConfigStore>) -> Vec<Drain> {
        let Ok(mut active) = self.active.lock() else {
            return Vec::new();
        };
        let mut retired = Vec::new();
        let names: Vec<String> = active.keys().cloned().collect();
        for name in names {
            let keep = snap.listeners.get(&name).is_some_and(|l| {
                active
                    .get(&name)
                    .is_some_and(|a| a.configured == l.spec.addr && a.udp == l.spec.kind.is_udp())
            });
            if !keep {
                if let Some(a) = active.remove(&name) {
                    a.drain.signal();
                    retired.push(a.drain);
                }
            }
        }
        for (name, a) in active.iter().filter(|(_, a)| !a.udp) {
            if let (Some(l), Some(fd)) = (snap.listeners.get(name), &a.socket) {
                defer_accept(name, fd, &l.spec);
            }
        }
        for (name, configured, sock) in bound.0 {
            if let (Some(l), Socket::Tcp(s)) = (snap.listeners.get(&name), &sock) {
                defer_accept(&name, s, &l.spec);
            }
            let (drain, watch) = Drain::new();
            let max = snap
                .listeners
                .get(&name)
                .map(|l| l.spec.max_connections)
                .unwrap_or(1);
            let name_arc: Arc<str> = Arc::from(name.as_str());
            let socket = match &sock {
                Socket::Tcp(s) => s.try_clone().map(OwnedFd::from),
                Socket::Udp(s) => s.try_clone().map(OwnedFd::from),
            }
            .ok();
            let (local, udp) = match sock {
                Socket::Tcp(sock) => {
                    let local = sock.local_addr().unwrap_or(configured);
                    tokio::spawn(accept_loop(sock, name_arc, store.clone(), watch, max));
                    (local, false)
                }
                Socket::Udp(sock) => {
                    let local = sock.local_addr().unwrap_or(configured);
                    tokio::spawn(l4::udp::serve(sock, name_arc, store.clone(), watch, max));
                    (local, true)
                }
            };
            tracing::info!(listener = %name, address = %local, udp, "listening");
            active.insert(
                name,
                Active {
                    configured,
                    udp,
                    local,
                    drain,
                    socket,
                },
            );
        }
        retired
    }

    /// The bound address of a listener (useful when configured with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.active.lock().ok()?.get(name).map(|a| a.local)
    }

    /// A descriptor of every listening socket, for a new binary to serve on.
    pub fn handover(&self) -> Vec<(Handed, OwnedFd)> {
        let Ok(active) = self.active.lock() else {
            return Vec::new();
        };
        active
            .iter()
            .filter_map(|(name, a)| {
                let fd = a.socket.as_ref()?.try_clone().ok()?;
                let h = Handed {
                    listener: Some(name.clone()),
                    configured: a.configured,
                    udp: a.udp,
                };
                Some((h, fd))
            })
            .collect()
    }

    /// Signals every listener to drain and takes them out of the table.
    pub fn drain_all(&self) -> Vec<Drain> {
        let Ok(mut active) = self.active.lock() else {
            return Vec::new();
        };
        active
            .drain()
            .map(|(_, a)| {
                a.drain.signal();
                a.drain
            })
            .collect()
    }
}

/// A listening TCP socket handed over by an old process, made ready for the runtime.
pub fn adopt(fd: OwnedFd) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true)?;
    socket2::SockRef::from(&l).set_tcp_nodelay(true)?;
    Ok(l)
}

/// How long the kernel holds a connection whose client said nothing yet, as NGINX's
/// `deferred` does (the kernel counts it in SYN-ACK retransmissions, so it is about a
/// second or a few). A client silent past it is handed over anyway, and then meets the
/// listener's own timeouts.
const DEFER_ACCEPT_SECS: u32 = 1;

/// Asks the kernel to hand a connection over only once its first bytes came, on HTTP
/// listeners (an HTTP client always speaks first) unless their `defer_accept` is off,
/// and never on layer-4 ones (a `tcp` upstream may speak first; a `tls_passthrough`
/// client's silence is timed by `header_read` from its connect). A connection per
/// request then costs no wake-up of its own before the request and no read that finds
/// nothing (tokio reads an accepted socket at once): 2.6 syscalls a connection fewer in
/// `close-1k` (docs/benchmarks.md). Set at every commit, since a reload can change a
/// listener's kind or key and keep its socket.
fn defer_accept(name: &str, sock: impl std::os::fd::AsFd, spec: &ListenerSpec) {
    let secs = if spec.defer_accept {
        DEFER_ACCEPT_SECS
    } else {
        0
    };
    if let Err(e) = gatehouse_sockopt::set_defer_accept(sock, secs) {
        // Only a cost: connections are then handed over as they come.
        tracing::warn!(listener = %name, error = %e, "cannot set TCP_DEFER_ACCEPT");
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = Socket2::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    // Accepted sockets inherit it (Linux copies the listener's TCP options): one
    // setsockopt per listener instead of one per connection.
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    Ok(sock.into())
}

/// A UDP socket. No SO_REUSEADDR: on UDP it would let a second socket share the port.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let sock = Socket2::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

async fn accept_loop(
    sock: std::net::TcpListener,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    watch: Watch,
    max: usize,
) {
    let listener = match TcpListener::from_std(sock) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %name, error = %e, "cannot register listener");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(max));
    // HTTP listeners park their idle connections (see `http::park`); without a lot
    // (no epoll set could be made) connections simply stay whole while idle.
    let lot = store
        .load()
        .listeners
        .get(&*name)
        .filter(|l| l.spec.kind.is_http())
        .map(|l| l.parked.clone())
        .and_then(|gauge| match Lot::start(watch.clone(), gauge) {
            Ok(lot) => Some(lot),
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "idle connections will not be parked");
                None
            }
        });
    // One drain future for the loop's life: making one per accept was a tenth of a
    // connection's own cost.
    let mut own = watch.clone();
    let stop = own.signaled();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut stop => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (name, store, watch) = (name.clone(), store.clone(), watch.clone());
                let lot = lot.clone();
                // The task's future is a pointer: the connection's own (over 2 KiB) is
                // boxed as it is made, not moved into the task and then moved again.
                tokio::spawn(async move {
                    let accepted = Accepted {
                        stream,
                        peer,
                        permit,
                    };
                    let conn = Box::write(
                        Box::new_uninit(),
                        connection(accepted, name, store, watch, lot),
                    );
                    Box::into_pin(conn).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A connection just accepted, with its place under the listener's `max_connections`.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// A connection's place under its listener's `max_connections`, and its count in the
/// `active` gauge, for as long as the connection lives (parked included).
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    active: Gauge,
}

impl Admitted {
    fn new(permit: OwnedSemaphorePermit, active: &Gauge) -> Admitted {
        active.inc();
        Admitted {
            _permit: permit,
            active: active.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.active.dec();
    }
}

async fn connection(
    accepted: Accepted,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    watch: Watch,
    lot: Option<Arc<Lot>>,
) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let snap = store.load();
    let Some(l) = snap.listeners.get(&*name).cloned() else {
        return;
    };
    l.connections.inc();
    let admitted = Admitted::new(permit, &l.active);
    let Some((io, p)) = client_stream(stream, peer, &l, &snap).await else {
        return;
    };
    if l.spec.kind.is_http() {
        drop(snap);
        let conn = Conn {
            client: p.client,
            name,
            store,
            watch,
            admitted,
            lot,
        };
        http(io, conn, &l).await;
    } else {
        // The address the client reached: from the PROXY header, else our own.
        let local = p.local.or_else(|| io.local_addr().ok());
        if let Some(local) = local {
            // Boxed: the task of every HTTP connection would otherwise have room
            // for a layer-4 session (see `size_tests`).
            Box::pin(layer4(io, p.client, local, &l, snap, watch)).await;
        }
        drop(admitted);
    }
}

/// The client's stream and address: with `proxy_protocol` on, a trusted peer must open
/// with a PROXY header, whose client address then stands for the peer everywhere
/// (forwarding headers, access log, ip_hash, PROXY headers sent on); any other peer is
/// served as itself but refused if it sends such a header. `None` refuses the connection.
async fn client_stream(
    stream: TcpStream,
    peer: SocketAddr,
    l: &ListenerRt,
    snap: &Runtime,
) -> Option<(ClientStream, Proxied)> {
    let own = Proxied {
        client: peer,
        local: None,
    };
    if !l.spec.proxy_protocol {
        return Some((ClientStream::plain(stream), own));
    }
    if !snap.is_trusted(peer.ip()) {
        return Some((ClientStream::guarded(stream), own));
    }
    match proxy_protocol::accept(stream, peer, l.spec.header_read_timeout).await {
        Ok(x) => Some(x),
        Err(e) => {
            tracing::debug!(listener = %l.name, %peer, error = %e, "PROXY header refused");
            None
        }
    }
}

/// What an HTTP connection's context is made of.
struct Conn {
    client: SocketAddr,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    watch: Watch,
    admitted: Admitted,
    lot: Option<Arc<Lot>>,
}

async fn http(stream: ClientStream, c: Conn, l: &ListenerRt) {
    let Conn {
        client: peer,
        name,
        store,
        watch,
        admitted,
        lot,
    } = c;
    let ctx = |client_cert| {
        Arc::new(ConnCtx::new(
            peer,
            name,
            store,
            watch,
            client_cert,
            admitted,
        ))
    };
    match &l.tls {
        None => server::serve(stream, ctx(None), l, Proto::Sniff, false, lot).await,
        Some(acceptor) => {
            // The handshake and the session are boxed (the session is 1.2 KiB), so the
            // task holds one pointer to it instead of room for it at every step.
            let accept = acceptor.accept(stream);
            // Bound before the serving starts, so the handshake's result does not stay
            // in the task while the connection is served.
            let tls =
                match Box::pin(tokio::time::timeout(l.spec.tls_handshake_timeout, accept)).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
            let session = tls.get_ref().1;
            let h2 = session.alpn_protocol() == Some(b"h2");
            // Only listeners with `client_ca` ask for one; rustls has verified it.
            let cert = session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| Arc::new(crate::tls::ClientCert::from_der(der)));
            let proto = if h2 { Proto::Http2 } else { Proto::Http1 };
            server::serve(tls, ctx(cert), l, proto, true, lot).await
        }
    }
}

/// A `tcp` or `tls_passthrough` connection. It keeps what it needs of this generation
/// (its upstream groups, the access log), so a reload does not touch it.
async fn layer4(
    io: ClientStream,
    client: SocketAddr,
    local: SocketAddr,
    l: &Arc<ListenerRt>,
    snap: Arc<Runtime>,
    watch: Watch,
) {
    let s = Session {
        listener: l.name.clone(),
        protocol: l.spec.kind.word(),
        client,
        local,
        idle_timeout: l.spec.idle_timeout,
        header_read_timeout: l.spec.header_read_timeout,
        drain_timeout: snap.spec.global.drain_timeout,
        log: snap.access_log.clone(),
        bytes: l.l4_bytes.clone(),
        time: std::time::SystemTime::now(),
        start: tokio::time::Instant::now(),
    };
    drop(snap);
    match (&l.spec.kind, &l.l4) {
        (ListenerKind::Tcp { .. }, Some(L4Target::Group(g))) => {
            l4::tcp::serve(io, s, g.clone(), watch).await
        }
        (ListenerKind::TlsPassthrough(_), Some(L4Target::Sni(t))) => {
            l4::passthrough::serve(io, s, t, watch).await
        }
        _ => tracing::debug!(listener = %l.name, "layer-4 listener has no upstream"),
    }
}

#[cfg(test)]
mod socket_tests {
    /// Accepted connections get TCP_NODELAY from the listening socket, bound here or
    /// handed over, so that no connection pays a setsockopt for it.
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay() {
        let bound = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let handed = super::adopt(std::os::fd::OwnedFd::from(plain)).unwrap();
        for l in [bound, handed] {
            let addr = l.local_addr().unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = l.accept().await.unwrap();
            assert!(accepted.nodelay().unwrap());
        }
    }
}

#[cfg(test)]
mod defer_tests {
    use crate::gateway::parse;
    use gatehouse_sockopt::defer_accept;

    /// HTTP listeners defer accept unless told not to, and a layer-4 one does not, on
    /// the same socket each way round, as reloads that change a listener's kind or
    /// key at one address do.
    #[test]
    fn http_listeners_defer_accept_unless_off_and_layer_4_ones_never() {
        let l = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let spec = |listener: &str| {
            let text = format!(
                "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\n{listener}\n\
                 [[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n"
            );
            parse(&text, "t.toml").unwrap().listeners.remove(0)
        };
        for (listener, deferred) in [
            ("", true),
            ("protocol = \"tcp\"\nupstream = \"u\"", false),
            ("protocol = \"redirect\"", true),
            ("defer_accept = false", false),
            ("", true),
        ] {
            super::defer_accept("l", &l, &spec(listener));
            assert_eq!(defer_accept(&l).unwrap() > 0, deferred, "{listener:?}");
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// The size of the future an async fn of five arguments returns.
    fn future_size<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every client connection's task holds this future for the connection's life, idle
    /// or not (10.9 KiB before the TLS session, the layer-4 session and the HTTP/2 and
    /// HTTP/1 drivers were boxed; 2.3 KiB after): most of a parked connection's cost.
    #[test]
    fn a_connection_task_stays_small() {
        let conn = future_size(super::connection);
        println!("connection task future {conn} B");
        assert!(conn <= 3 * 1024, "connection future is {conn} bytes");
    }
}
