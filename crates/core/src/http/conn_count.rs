//! An endpoint's upstream connections counted: open now, opened, and closed by why
//! ([`Closed`]). Each count moves once per connection, never per request; /metrics and
//! the admin API read them, and they say why a run opened the connections it did.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Why an upstream connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Its exchange ended with it: either side said `Connection: close`, an HTTP/1.0
    /// response without keep-alive, a body delimited by the close, a request not sent
    /// whole.
    NotReusable,
    /// Its exchange did not end exactly: an error, a timeout, the client gone before
    /// the response was read to its end, bytes past the response's end.
    Unfinished,
    /// Pooled longer than `pool.idle_timeout`.
    IdleTimeout,
    /// Closed by the upstream while pooled (or it sent bytes no request asked for).
    UpstreamClosed,
    /// The pool held `max_idle_per_endpoint` idle connections already.
    PoolFull,
    /// Its endpoint was drained or removed.
    Drained,
    /// Handed to a tunnel by `101 Switching Protocols`, and closed with it.
    Upgraded,
    /// An HTTP/2 connection ended: a GOAWAY, an error, or its last handle let go.
    Http2Ended,
}

impl Closed {
    pub const ALL: [Closed; 8] = [
        Closed::NotReusable,
        Closed::Unfinished,
        Closed::IdleTimeout,
        Closed::UpstreamClosed,
        Closed::PoolFull,
        Closed::Drained,
        Closed::Upgraded,
        Closed::Http2Ended,
    ];

    /// The `reason` label of the metric and the admin API's key.
    pub fn label(self) -> &'static str {
        match self {
            Closed::NotReusable => "not_reusable",
            Closed::Unfinished => "unfinished",
            Closed::IdleTimeout => "idle_timeout",
            Closed::UpstreamClosed => "upstream_closed",
            Closed::PoolFull => "pool_full",
            Closed::Drained => "drained",
            Closed::Upgraded => "upgraded",
            Closed::Http2Ended => "http2_ended",
        }
    }
}

/// One endpoint's connection counts.
#[derive(Default)]
pub struct ConnCount {
    open: AtomicUsize,
    opened: AtomicU64,
    closed: [AtomicU64; Closed::ALL.len()],
}

impl ConnCount {
    /// Connections open now, idle or busy.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Connections opened since the endpoint was first configured.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Connections closed for `why`.
    pub fn closed(&self, why: Closed) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }
}

/// Counts a connection as open for as long as it lives, and its close under the last
/// reason given to it.
pub struct OpenGuard {
    count: Arc<ConnCount>,
    why: Closed,
}

impl OpenGuard {
    /// A connection just opened; `why` is its reason to close unless told another.
    pub fn new(count: Arc<ConnCount>, why: Closed) -> OpenGuard {
        count.open.fetch_add(1, Relaxed);
        count.opened.fetch_add(1, Relaxed);
        OpenGuard { count, why }
    }

    /// The reason the connection will be counted under when it closes.
    pub fn close_as(&mut self, why: Closed) {
        self.why = why;
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.count.open.fetch_sub(1, Relaxed);
        self.count.closed[self.why as usize].fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_counted_open_then_closed_under_its_last_reason() {
        let count = Arc::new(ConnCount::default());
        let mut c = OpenGuard::new(count.clone(), Closed::Unfinished);
        let other = OpenGuard::new(count.clone(), Closed::Http2Ended);
        assert_eq!((count.open(), count.opened()), (2, 2));
        c.close_as(Closed::PoolFull);
        drop(c);
        drop(other);
        assert_eq!((count.open(), count.opened()), (0, 2));
        assert_eq!(count.closed(Closed::PoolFull), 1);
        assert_eq!(count.closed(Closed::Http2Ended), 1);
        assert_eq!(count.closed(Closed::Unfinished), 0);
    }

    #[test]
    fn every_reason_has_its_own_label_and_slot() {
        for (i, why) in Closed::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i);
        }
        let mut labels: Vec<_> = Closed::ALL.iter().map(|c| c.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Closed::ALL.len());
    }
}
