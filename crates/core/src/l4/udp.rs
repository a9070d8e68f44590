//! A `udp` listener: datagrams balanced per client flow. A flow is one client address;
//! its first datagram picks an endpoint (through the group's balancer, counted in flight
//! on it while the flow lives) and opens a connected socket to it, so every later
//! datagram of that client goes to the same endpoint and every reply on that socket goes
//! back to that client. A flow ends after `timeouts.udp_idle` with no datagram either
//! way; `max_connections` bounds the flows (datagrams of new clients past it are dropped).
//!
//! One task reads the listener socket; each flow has a task reading its upstream socket
//! and ending the flow when idle. Depends on `upstream`, `runtime` and `l4`'s log line.

use super::{hash_key, Counts, L4Target};
use crate::drain::Watch;
use crate::runtime::{ConfigStore, ListenerRt};
use crate::upstream::endpoint::InFlight;
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::ListenerKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The largest datagram relayed (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

/// One client's flow.
struct Flow {
    upstream: UdpSocket,
    /// Milliseconds since the listener's `epoch` of the last datagram either way.
    last: AtomicU64,
    counts: Counts,
    in_flight: InFlight,
    group: Arc<str>,
    time: SystemTime,
    start: Instant,
}

/// The listener's shared state.
struct Shared {
    name: Arc<str>,
    store: Arc<ConfigStore>,
    sock: Arc<UdpSocket>,
    flows: Flows,
    epoch: Instant,
    max_flows: usize,
}

/// Reads the listener socket until the listener drains. Open flows go on until idle.
pub async fn serve(
    sock: std::net::UdpSocket,
    name: Arc<str>,
    store: Arc<ConfigStore>,
    mut watch: Watch,
    max_flows: usize,
) {
    let sock = match UdpSocket::from_std(sock) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(listener = %name, error = %e, "cannot register listener");
            return;
        }
    };
    let shared = Arc::new(Shared {
        name,
        store: store.clone(),
        sock,
        flows: Arc::default(),
        epoch: Instant::now(),
        max_flows,
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            r = shared.sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; they concern one
                    // datagram, not the socket.
                    tracing::debug!(listener = %shared.name, error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = watch.signaled() => return,
        };
        let Some(l) = store.load().listeners.get(&*shared.name).cloned() else {
            return;
        };
        let flow = match existing(&shared, client) {
            Some(f) => f,
            None => match open(&shared, &l, client, &watch).await {
                Some(f) => f,
                None => continue,
            },
        };
        let data = &buf[..n];
        flow.counts.received.fetch_add(n as u64, Ordering::Relaxed);
        l.l4_bytes.received.inc_by(n as u64);
        if let Err(e) = flow.upstream.send(data).await {
            tracing::debug!(listener = %shared.name, %client, error = %e, "udp send to upstream failed");
        }
    }
}

/// The client's flow, marked active, if it has one.
fn existing(shared: &Shared, client: SocketAddr) -> Option<Arc<Flow>> {
    let flows = shared.flows.lock().ok()?;
    let f = flows.get(&client)?.clone();
    f.touch(shared.epoch);
    Some(f)
}

/// Opens a flow for a new client: picks an endpoint (another one if a socket cannot
/// be opened to it), starts the reply task, and registers the flow.
async fn open(
    shared: &Arc<Shared>,
    l: &Arc<ListenerRt>,
    client: SocketAddr,
    watch: &Watch,
) -> Option<Arc<Flow>> {
    let Some(L4Target::Group(group)) = &l.l4 else {
        return None;
    };
    let ListenerKind::Udp {
        flow_idle_timeout, ..
    } = l.spec.kind
    else {
        return None;
    };
    if shared.flows.lock().ok()?.len() >= shared.max_flows {
        tracing::debug!(listener = %shared.name, %client, "udp flow limit reached; datagram dropped");
        return None;
    }
    let (upstream, in_flight) = connect(group, client).await?;
    let flow = Arc::new(Flow {
        upstream,
        last: AtomicU64::new(0),
        counts: Counts::default(),
        in_flight,
        group: group.name.clone(),
        time: SystemTime::now(),
        start: Instant::now(),
    });
    flow.touch(shared.epoch);
    shared.flows.lock().ok()?.insert(client, flow.clone());
    l.connections.inc();
    l.active.inc();
    tokio::spawn(replies(
        shared.clone(),
        l.clone(),
        flow.clone(),
        client,
        flow_idle_timeout,
        watch.clone(),
    ));
    Some(flow)
}

async fn connect(group: &UpstreamGroup, client: SocketAddr) -> Option<(UdpSocket, InFlight)> {
    let key = hash_key(group, client);
    let mut tried = Vec::new();
    while let Ok((i, ep)) = group.pick(&tried, key, None) {
        let in_flight = ep.start();
        let sock = async {
            let addr = crate::http::client::resolve(&ep)
                .await
                .map_err(|e| std::io::Error::other(e.message()))?;
            let any: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(any).await?;
            s.connect(addr).await?;
            Ok::<_, std::io::Error>(s)
        };
        match tokio::time::timeout(group.spec.connect_timeout, sock).await {
            Ok(Ok(s)) => return Some((s, in_flight)),
            Ok(Err(e)) => tracing::debug!(endpoint = %ep.label, error = %e, "udp socket failed"),
            Err(_) => tracing::debug!(endpoint = %ep.label, "udp endpoint resolution timed out"),
        }
        in_flight.failed();
        tried.push(i);
    }
    tracing::debug!(upstream = %group.name, %client, "no udp endpoint; datagram dropped");
    None
}

/// Relays the endpoint's datagrams back to the client until the flow is idle.
async fn replies(
    shared: Arc<Shared>,
    l: Arc<ListenerRt>,
    flow: Arc<Flow>,
    client: SocketAddr,
    idle: Duration,
    // Held so a drain waits for open flows (they end on their own when idle).
    _watch: Watch,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut error = None;
    loop {
        let expires = flow.expires(shared.epoch, idle);
        tokio::select! {
            r = flow.upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    flow.touch(shared.epoch);
                    match shared.sock.send_to(&buf[..n], client).await {
                        Ok(sent) => {
                            flow.counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
                            l.l4_bytes.sent.inc_by(sent as u64);
                        }
                        Err(e) => tracing::debug!(%client, error = %e, "udp send to client failed"),
                    }
                }
                Err(e) => {
                    // Typically "connection refused" from an ICMP port unreachable: the
                    // endpoint is not listening. End the flow so the next datagram picks again.
                    tracing::debug!(%client, error = %e, "udp receive from upstream failed");
                    flow.in_flight.failed();
                    error = Some("connection_error");
                    if remove(&shared, client, &flow, None) {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep_until(expires) => {
                if remove(&shared, client, &flow, Some(idle)) {
                    break;
                }
            }
        }
    }
    l.active.dec();
    if let Some(log) = &shared.store.load().access_log {
        log.write_l4(&crate::access_log::L4Record {
            time: flow.time,
            client,
            protocol: "udp",
            listener: &shared.name,
            sni: None,
            upstream: Some(&flow.group),
            endpoint: Some(&flow.in_flight.endpoint().label),
            bytes_in: flow.counts.received.load(Ordering::Relaxed),
            bytes_out: flow.counts.sent.load(Ordering::Relaxed),
            duration_ms: flow.start.elapsed().as_secs_f64() * 1000.0,
            error,
        });
    }
}

/// Takes the flow out of the table: always when `idle` is `None`, else only if it has
/// been idle that long. Done under the table's lock, so a datagram arriving meanwhile
/// either keeps the flow alive or finds it gone and opens a new one.
fn remove(shared: &Shared, client: SocketAddr, flow: &Arc<Flow>, idle: Option<Duration>) -> bool {
    let Ok(mut flows) = shared.flows.lock() else {
        return true;
    };
    if let Some(idle) = idle {
        if flow.expires(shared.epoch, idle) > Instant::now() {
            return false;
        }
    }
    if flows.get(&client).is_some_and(|f| Arc::ptr_eq(f, flow)) {
        flows.remove(&client);
    }
    true
}

// === impl Flow ===

impl Flow {
    fn touch(&self, epoch: Instant) {
        let ms = Instant::now().saturating_duration_since(epoch).as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn expires(&self, epoch: Instant, idle: Duration) -> Instant {
        epoch + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle
    }
}
