//! Listeners: bind, accept with a per-listener connection limit, hand each connection to
//! TLS and the HTTP server, and reconcile the set on reload. New addresses are bound
//! before a reload is committed (a failed bind rejects the reload); unchanged listeners
//! keep their sockets and connections; removed ones stop accepting and drain.

use crate::drain::{Drain, Watch};
use crate::http::server::{self, Proto};
use crate::proxy::ConnCtx;
use crate::runtime::{ConfigStore, Runtime};
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The running listeners, by name.
#[derive(Default)]
pub struct Listeners {
    active: Mutex<HashMap<String, Active>>,
}

struct Active {
    /// The address as configured (port 0 stays 0), to tell whether it changed.
    configured: SocketAddr,
    local: SocketAddr,
    drain: Drain,
}

/// Sockets bound for a reload that has not been committed yet.
pub struct Bound(Vec<(String, SocketAddr, std::net::TcpListener)>);

// === impl Listeners ===

impl Listeners {
    /// Binds every listener of `snap` that is new or whose address changed.
    pub fn bind(&self, snap: &Runtime) -> Result<Bound, Vec<String>> {
        let active = self
            .active
            .lock()
            .map_err(|_| vec!["listener table poisoned".to_string()])?;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (name, l) in &snap.listeners {
            if active
                .get(name)
                .is_some_and(|a| a.configured == l.spec.addr)
            {
                continue;
            }
            match bind(l.spec.addr) {
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
                    .is_some_and(|a| a.configured == l.spec.addr)
            });
            if !keep {
                if let Some(a) = active.remove(&name) {
                    a.drain.signal();
                    retired.push(a.drain);
                }
            }
        }
        for (name, configured, sock) in bound.0 {
            let local = sock.local_addr().unwrap_or(configured);
            let (drain, watch) = Drain::new();
            let max = snap
                .listeners
                .get(&name)
                .map(|l| l.spec.max_connections)
                .unwrap_or(1);
            let name_arc: Arc<str> = Arc::from(name.as_str());
            tokio::spawn(accept_loop(sock, name_arc, store.clone(), watch, max));
            tracing::info!(listener = %name, address = %local, "listening");
            active.insert(
                name,
                Active {
                    configured,
                    local,
                    drain,
                },
            );
        }
        retired
    }

    /// The bound address of a listener (useful when configured with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.active.lock().ok()?.get(name).map(|a| a.local)
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

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    Ok(sock.into())
}

async fn accept_loop(
    sock: std::net::TcpListener,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    mut watch: Watch,
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
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = watch.signaled() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = watch.signaled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (name, store, watch) = (name.clone(), store.clone(), watch.clone());
                tokio::spawn(async move {
                    connection(stream, peer, name, store, watch).await;
                    drop(permit);
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

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    watch: Watch,
) {
    let _ = stream.set_nodelay(true);
    let Some(l) = store.load().listeners.get(&*name).cloned() else {
        return;
    };
    l.connections.inc();
    l.active.inc();
    let ctx = Arc::new(ConnCtx {
        peer,
        peer_ip: crate::http::headers::ip_text(peer.ip()),
        listener: name,
        store,
        drain: watch.clone(),
    });
    match &l.tls {
        None => server::serve(stream, ctx, &l, Proto::Sniff, false, watch).await,
        Some(acceptor) => {
            match tokio::time::timeout(l.spec.tls_handshake_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let proto = if h2 { Proto::Http2 } else { Proto::Http1 };
                    server::serve(tls, ctx, &l, proto, true, watch).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
    l.active.dec();
}
