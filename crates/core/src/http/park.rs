//! Parking idle HTTP/1 connections. Once a kept-alive connection has been silent for a
//! tick of its driver (a second at most) with no request open, its hyper connection
//! (read and write buffers, the request slot) is taken down, its task ends, and what is
//! left (the socket, with its TLS session, and the connection's context) waits in its
//! listener's [`Lot`]; the next request's first bytes start a task that builds a fresh
//! hyper connection on it. As NGINX frees a kept-alive connection's buffers, an idle
//! plain connection then costs a slot here and its context, a few hundred bytes, where
//! a live one holds a task, hyper's buffers and tokio's registration.
//!
//! The lot keeps parked sockets out of tokio's reactor, in an epoll set of its own
//! (rustix's safe epoll): the set's descriptor is the one thing tokio watches, and one
//! task serves the whole lot, waking a connection when its socket becomes readable
//! (one-shot events), closing it when its deadline (the idle timeout or `header_read`)
//! passes, and closing them all when the listener drains.
//!
//! The take-down is hyper's own graceful shutdown of an idle connection, with the
//! socket's shutdown skipped (see `ConnState::parking`), and `into_parts`, which hands
//! back the socket and any bytes of the next head already read.

use crate::drain::Watch;
use crate::proxy::ParkedCtx;
use crate::proxy_protocol::ClientStream;
use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use rustix::event::epoll;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A TLS client connection as the HTTP server holds it.
pub type TlsIo = Box<tokio_rustls::server::TlsStream<ClientStream>>;

/// A client connection's I/O that can leave tokio's reactor while parked.
pub trait Park: Sized {
    /// Takes the socket out of the reactor; `Err` when it cannot be (bytes held, or a
    /// failed deregistration), and the connection is then closed.
    fn detach(self) -> io::Result<Socket>;
}

impl Park for ClientStream {
    fn detach(self) -> io::Result<Socket> {
        self.into_parked().map(Socket::Plain)
    }
}

impl Park for TlsIo {
    fn detach(mut self) -> io::Result<Socket> {
        self.get_mut().0.detach()?;
        Ok(Socket::Tls(self))
    }
}

/// A parked connection's socket, out of tokio's reactor.
pub enum Socket {
    Plain(std::net::TcpStream),
    /// The TLS session stays whole; only the socket under it left the reactor.
    Tls(TlsIo),
}

impl Socket {
    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        match self {
            Socket::Plain(s) => Ok(s.as_fd()),
            Socket::Tls(t) => t.get_ref().0.parked_fd(),
        }
    }
}

/// A parked connection: what it needs to be served again.
pub struct Parked {
    pub socket: Socket,
    /// A request head begun before the parking, read again first.
    pub begun: Bytes,
    /// The connection's context, its own again (no request holds it while parked).
    pub ctx: ParkedCtx,
    /// When its wait for a request head began (`header_read` runs from there).
    pub head_since: Instant,
    /// When it is closed if nothing comes: the idle timeout or `header_read`.
    pub until: Instant,
}

/// A parked connection as its slot holds it: by value, so that a parked connection owns
/// no allocation of its own (but a TLS session) and the memory its serving used is all
/// given back, not pinned by a few small objects left in each page; and small, its
/// times in milliseconds from the lot's start.
struct Stored {
    socket: Socket,
    begun: Option<Box<[u8]>>,
    ctx: ParkedCtx,
    head_since: u32,
    until: u32,
}

/// How a parked connection's wait ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Wake {
    /// Bytes (or the client's close) arrived: serve them.
    Readable,
    /// Its deadline passed or the listener drains: close.
    Close,
}

/// One listener's parked connections (see the module docs).
pub struct Lot {
    epoll: AsyncFd<OwnedFd>,
    /// What the stored times count from.
    epoch: Instant,
    slots: Mutex<Slots<Stored>>,
    /// A connection was parked with a deadline before the one the lot's timer waits for.
    sooner: Notify,
    /// The listener's `parked` gauge.
    gauge: Gauge,
}

/// The parked connections by slot, with their deadlines.
struct Slots<T> {
    /// Chunks of [`CHUNK`] slots; a slot's key is its index across them.
    chunks: Vec<Vec<Slot<T>>>,
    /// Slots made so far.
    made: u32,
    /// Slots taken now.
    taken: u32,
    /// The first free slot; each free slot names the next.
    free: Option<u32>,
    /// Deadlines (milliseconds from the lot's epoch) with their slot and generation,
    /// soonest first; an entry whose slot moved on (its generation) is stale.
    deadlines: BinaryHeap<Reverse<(u32, u32, u32)>>,
    /// The listener drains: nothing more is parked.
    closed: bool,
}

enum Slot<T> {
    /// Free: the next free slot, and the generation its next occupant gets.
    Free {
        next: Option<u32>,
        generation: u32,
    },
    Taken {
        generation: u32,
        conn: T,
    },
}

/// Slots per chunk. Slots live in chunks of a fixed size, so that the lot grows a chunk
/// at a time instead of doubling (and copying) one vector.
const CHUNK: usize = 256;

/// Events taken from the lot's epoll set per wait.
const EVENTS: usize = 64;

impl Lot {
    /// A lot for one listener, with the task that serves it until `watch` signals.
    pub fn start(watch: Watch, gauge: Gauge) -> io::Result<Arc<Lot>> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // The safe constructor, deprecated for types that hand out a descriptor they do
        // not own; an `OwnedFd` owns its own (its replacement is `unsafe`, which this
        // crate forbids).
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(fd, Interest::READABLE)?;
        let lot = Arc::new(Lot {
            epoll,
            epoch: Instant::now(),
            slots: Mutex::default(),
            sooner: Notify::new(),
            gauge,
        });
        tokio::spawn(lot.clone().run(watch));
        Ok(lot)
    }

    /// Parks `p`; closes it when the lot is closed (a drain) or the socket cannot be
    /// watched.
    pub fn park(&self, p: Parked) {
        if let Err(p) = self.try_park(p) {
            close(p.socket, p.ctx);
        }
    }

    fn try_park(&self, p: Parked) -> Result<(), Box<Parked>> {
        let until = self.millis(p.until, true);
        let mut s = self.lock();
        if s.closed {
            return Err(Box::new(p));
        }
        let (key, generation) = s.next_key();
        let Ok(fd) = p.socket.fd() else {
            return Err(Box::new(p));
        };
        let data = epoll::EventData::new_u64(u64::from(generation) << 32 | u64::from(key));
        // One-shot: the first readiness wakes it, and it leaves the set then.
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        if epoll::add(self.epoll.get_ref(), fd, data, flags).is_err() {
            return Err(Box::new(p));
        }
        s.insert(key, generation, self.store(p));
        let soonest = s.deadlines.peek().is_none_or(|Reverse((t, ..))| until < *t);
        s.deadlines.push(Reverse((until, key, generation)));
        drop(s);
        self.gauge.inc();
        if soonest {
            self.sooner.notify_one();
        }
        Ok(())
    }

    /// `t` in milliseconds from the epoch; a deadline rounds up, so it never comes early.
    fn millis(&self, t: Instant, up: bool) -> u32 {
        let d = t.saturating_duration_since(self.epoch);
        let ms = d.as_millis() + u128::from(up && !d.subsec_nanos().is_multiple_of(1_000_000));
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    fn instant(&self, ms: u32) -> Instant {
        self.epoch + Duration::from_millis(u64::from(ms))
    }

    fn store(&self, p: Parked) -> Stored {
        Stored {
            socket: p.socket,
            begun: (!p.begun.is_empty()).then(|| Box::from(&p.begun[..])),
            ctx: p.ctx,
            head_since: self.millis(p.head_since, false),
            until: self.millis(p.until, true),
        }
    }

    fn unstore(&self, s: Stored) -> Parked {
        Parked {
            socket: s.socket,
            begun: s.begun.map(Bytes::from).unwrap_or_default(),
            ctx: s.ctx,
            head_since: self.instant(s.head_since),
            until: self.instant(s.until),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<Stored>> {
        // A panic while holding it leaves plain data behind: go on with it.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self: Arc<Self>, mut watch: Watch) {
        loop {
            let next = self.lock().next_deadline();
            let timer = async {
                match next {
                    Some(ms) => tokio::time::sleep_until(self.instant(ms)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = watch.signaled() => break,
                ready = self.epoll.readable() => {
                    let Ok(mut guard) = ready else { break };
                    if self.take_ready() {
                        guard.clear_ready();
                    }
                }
                _ = timer => self.expire(Instant::now()),
                _ = self.sooner.notified() => {}
            }
        }
        self.close_all();
    }

    /// Wakes every connection whose socket is readable. `true` once the set has no
    /// more events (its readiness may be cleared).
    fn take_ready(self: &Arc<Self>) -> bool {
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); EVENTS];
        let Ok((events, _)) = epoll::wait(self.epoll.get_ref(), &mut buf, Some(&zero)) else {
            return true;
        };
        let n = events.len();
        let woken: Vec<Stored> = {
            let mut s = self.lock();
            events
                .iter()
                .filter_map(|e| {
                    let data = e.data.u64();
                    s.take((data & u64::from(u32::MAX)) as u32, (data >> 32) as u32)
                })
                .collect()
        };
        for p in woken {
            self.leave(p, Wake::Readable);
        }
        n < EVENTS
    }

    /// Closes every connection whose deadline has passed.
    fn expire(self: &Arc<Self>, now: Instant) {
        let now = self.millis(now, false);
        let due: Vec<Stored> = {
            let mut s = self.lock();
            let mut due = Vec::new();
            while let Some(&Reverse((t, key, generation))) = s.deadlines.peek() {
                if t > now {
                    break;
                }
                s.deadlines.pop();
                due.extend(s.take(key, generation));
            }
            due
        };
        for p in due {
            self.leave(p, Wake::Close);
        }
    }

    /// The drain: every parked connection is closed, and none is parked again.
    fn close_all(self: &Arc<Self>) {
        let all: Vec<Stored> = {
            let mut s = self.lock();
            let slots = std::mem::take(&mut *s);
            s.closed = true;
            slots
                .chunks
                .into_iter()
                .flatten()
                .filter_map(|slot| match slot {
                    Slot::Taken { conn, .. } => Some(conn),
                    Slot::Free { .. } => None,
                })
                .collect()
        };
        for p in all {
            self.leave(p, Wake::Close);
        }
    }

    /// A connection leaves the lot: out of the epoll set, then served or closed.
    fn leave(self: &Arc<Self>, conn: Stored, wake: Wake) {
        if let Ok(fd) = conn.socket.fd() {
            let _ = epoll::delete(self.epoll.get_ref(), fd);
        }
        self.gauge.dec();
        match wake {
            Wake::Readable => super::server::resume(self.unstore(conn), self.clone()),
            Wake::Close => close(conn.socket, conn.ctx),
        }
    }
}

/// Closes a parked connection: a plain socket at once (its FIN goes with the close);
/// a TLS one after its close_notify, from a task of its own, bounded in time.
fn close(socket: Socket, ctx: ParkedCtx) {
    let Socket::Tls(mut tls) = socket else {
        return;
    };
    tokio::spawn(async move {
        if tls.get_mut().0.attach().is_ok() {
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
        }
        drop(ctx);
    });
}

// === impl Slots ===

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            made: 0,
            taken: 0,
            free: None,
            deadlines: BinaryHeap::new(),
            closed: false,
        }
    }
}

impl<T> Slots<T> {
    fn slot(&self, key: u32) -> Option<&Slot<T>> {
        let i = key as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn slot_mut(&mut self, key: u32) -> Option<&mut Slot<T>> {
        let i = key as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// The slot the next [`insert`](Self::insert) fills, and the generation that tells
    /// its occupant from the slot's earlier ones.
    fn next_key(&self) -> (u32, u32) {
        match self.free.map(|key| (key, self.slot(key))) {
            Some((key, Some(Slot::Free { generation, .. }))) => (key, *generation),
            // The free list names only free slots; past its end, a new slot.
            _ => (self.made, 0),
        }
    }

    /// Fills the slot [`next_key`](Self::next_key) named.
    fn insert(&mut self, key: u32, generation: u32, conn: T) {
        let taken = Slot::Taken { generation, conn };
        self.taken += 1;
        if let Some(slot) = self.slot_mut(key) {
            if let Slot::Free { next, .. } = slot {
                let next = *next;
                *slot = taken;
                self.free = next;
            }
            return;
        }
        if (self.made as usize).is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(taken);
            self.made += 1;
        }
    }

    /// Takes the connection in `key` if it is still the one of `generation`.
    fn take(&mut self, key: u32, generation: u32) -> Option<T> {
        match self.slot(key)? {
            Slot::Taken { generation: g, .. } if *g == generation => self.remove(key),
            _ => None,
        }
    }

    fn remove(&mut self, key: u32) -> Option<T> {
        let next = self.free;
        let slot = self.slot_mut(key)?;
        let Slot::Taken { generation, .. } = slot else {
            return None;
        };
        let free = Slot::Free {
            next,
            generation: generation.wrapping_add(1),
        };
        let Slot::Taken { conn, .. } = std::mem::replace(slot, free) else {
            return None;
        };
        self.free = Some(key);
        self.taken -= 1;
        if self.taken == 0 {
            // Empty again: the memory of a burst of idle connections goes back.
            let closed = self.closed;
            *self = Slots {
                closed,
                ..Slots::default()
            };
        }
        Some(conn)
    }

    fn next_deadline(&mut self) -> Option<u32> {
        // Stale entries (woken or closed connections) are dropped as they surface.
        while let Some(&Reverse((t, key, generation))) = self.deadlines.peek() {
            match self.slot(key) {
                Some(Slot::Taken { generation: g, .. }) if *g == generation => return Some(t),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &mut Slots<u32>, v: u32) -> (u32, u32) {
        let (key, generation) = s.next_key();
        s.insert(key, generation, v);
        (key, generation)
    }

    #[test]
    fn slots_are_reused_with_a_new_generation_across_chunks() {
        let mut s = Slots::default();
        let keys: Vec<(u32, u32)> = (0..600).map(|v| put(&mut s, v)).collect();
        assert_eq!(s.chunks.len(), 3, "600 slots in chunks of {CHUNK}");
        assert_eq!(keys[300], (300, 0));
        assert_eq!(s.take(300, 0), Some(300));
        assert_eq!(s.take(300, 0), None, "taken once");
        assert_eq!(s.take(301, 7), None, "another generation's key");
        // The freed slot is the next one filled, under a new generation.
        assert_eq!(put(&mut s, 1000), (300, 1));
        assert_eq!(s.take(300, 0), None, "the old occupant's key is stale");
        assert_eq!(s.take(300, 1), Some(1000));
        assert_eq!(s.chunks.len(), 3);
    }

    #[test]
    fn an_empty_lot_gives_its_slots_back() {
        let mut s = Slots::default();
        let keys: Vec<(u32, u32)> = (0..300).map(|v| put(&mut s, v)).collect();
        s.deadlines.push(Reverse((5, keys[0].0, keys[0].1)));
        for (i, (key, generation)) in keys.into_iter().enumerate() {
            assert_eq!(s.take(key, generation), Some(i as u32));
        }
        assert!(s.chunks.is_empty() && s.deadlines.is_empty());
        assert_eq!(s.next_key(), (0, 0));
    }

    #[test]
    fn stale_deadlines_are_skipped() {
        let mut s = Slots::default();
        let (a, ga) = put(&mut s, 1);
        let (b, gb) = put(&mut s, 2);
        s.deadlines.push(Reverse((10, a, ga)));
        s.deadlines.push(Reverse((20, b, gb)));
        assert_eq!(s.next_deadline(), Some(10));
        s.take(a, ga);
        assert_eq!(
            s.next_deadline(),
            Some(20),
            "the woken one's deadline is dropped"
        );
    }
}
