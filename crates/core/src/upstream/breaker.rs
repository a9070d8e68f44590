//! The circuit breaker of an upstream group: limits on requests in flight, requests
//! waiting for a connection and open connections, and a breaker that opens after
//! consecutive failures, rejects at once while open, then lets a few probes through
//! (half-open) and closes on their success. Its state outlives reloads.

use super::health::Outcome;
use gatehouse_config::spec::BreakerSpec;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// When a rejected request may be tried again, for the `Retry-After` header.
const OVERFLOW_RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Breaker {
    born: Instant,
    state: AtomicU8,
    consecutive: AtomicU32,
    opened_ms: AtomicU64,
    probes: AtomicU32,
    in_flight: AtomicUsize,
    pending: AtomicUsize,
    pub opens: AtomicU64,
}

/// Why a request was turned away, and when to come back.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub reason: &'static str,
    pub retry_after: Duration,
}

/// A request admitted by the breaker; counts as in flight until dropped. Borrowed, so
/// admission costs one atomic add and no reference count.
pub struct Admitted<'a>(&'a AtomicUsize);

/// A request waiting for a connection; counts as pending until dropped. Borrowed, like
/// [`Admitted`].
pub struct Pending<'a>(&'a AtomicUsize);

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            born: Instant::now(),
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            opened_ms: AtomicU64::new(0),
            probes: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            opens: AtomicU64::new(0),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.born)
            .as_millis() as u64
    }

    /// `closed`, `open` or `half_open`, for the admin API and metrics.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            OPEN => "open",
            HALF_OPEN => "half_open",
            _ => "closed",
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Lets a request in, or says why not.
    pub fn admit(&self, spec: &BreakerSpec) -> Result<Admitted<'_>, Rejected> {
        if spec.max_in_flight != 0 && self.in_flight() >= spec.max_in_flight {
            return Err(Rejected {
                reason: "has as many requests in flight as its breaker allows",
                retry_after: OVERFLOW_RETRY_AFTER,
            });
        }
        match self.state.load(Ordering::Acquire) {
            CLOSED => {}
            OPEN => {
                let open_for = spec.open_for.as_millis() as u64;
                let since = self
                    .now_ms()
                    .saturating_sub(self.opened_ms.load(Ordering::Acquire));
                if since < open_for {
                    return Err(Rejected {
                        reason: "has an open circuit breaker",
                        retry_after: Duration::from_millis(open_for - since),
                    });
                }
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.probes.store(0, Ordering::Release);
                }
                return self.probe(spec);
            }
            _ => return self.probe(spec),
        }
        Ok(self.enter())
    }

    fn probe(&self, spec: &BreakerSpec) -> Result<Admitted<'_>, Rejected> {
        if self.probes.fetch_add(1, Ordering::AcqRel) >= spec.half_open_requests {
            self.probes.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejected {
                reason: "has a half-open circuit breaker that is probing",
                retry_after: OVERFLOW_RETRY_AFTER,
            });
        }
        Ok(self.enter())
    }

    fn enter(&self) -> Admitted<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Admitted(&self.in_flight)
    }

    /// Marks a request as waiting for a connection, within `max_pending`.
    pub fn pend(&self, spec: &BreakerSpec) -> Result<Pending<'_>, Rejected> {
        let n = self.pending.fetch_add(1, Ordering::AcqRel);
        if spec.max_pending != 0 && n >= spec.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejected {
                reason: "has as many requests waiting for a connection as its breaker allows",
                retry_after: OVERFLOW_RETRY_AFTER,
            });
        }
        Ok(Pending(&self.pending))
    }

    /// Feeds one attempt's outcome to the breaker.
    pub fn record(&self, outcome: Outcome, spec: &BreakerSpec) {
        if spec.consecutive_failures == 0 {
            return;
        }
        let state = self.state.load(Ordering::Acquire);
        match outcome {
            Outcome::Success => {
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                if state == HALF_OPEN
                    && self
                        .state
                        .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    tracing::info!("circuit breaker closed");
                }
            }
            Outcome::Failure => {
                let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                let trip = match state {
                    HALF_OPEN => true,
                    CLOSED => n >= spec.consecutive_failures,
                    _ => false,
                };
                if trip {
                    self.opened_ms.store(self.now_ms(), Ordering::Release);
                    if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
                        self.opens.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(failures = n, "circuit breaker opened");
                    }
                    self.consecutive.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            consecutive_failures: 3,
            open_for: Duration::from_secs(10),
            half_open_requests: 1,
            ..BreakerSpec::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_then_half_opens_and_closes() {
        let b = Breaker::default();
        let s = spec();
        for _ in 0..3 {
            let _a = b.admit(&s).unwrap();
            b.record(Outcome::Failure, &s);
        }
        assert_eq!(b.state(), "open");
        let r = b.admit(&s).err().unwrap();
        assert_eq!(r.retry_after, Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            b.admit(&s).err().unwrap().retry_after,
            Duration::from_secs(6)
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.admit(&s).unwrap();
        assert_eq!(b.state(), "half_open");
        assert!(b.admit(&s).is_err(), "one probe at a time");
        b.record(Outcome::Success, &s);
        drop(probe);
        assert_eq!(b.state(), "closed");
        assert!(b.admit(&s).is_ok());
        assert_eq!(b.opens.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let b = Breaker::default();
        let s = spec();
        for _ in 0..3 {
            b.record(Outcome::Failure, &s);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let _p = b.admit(&s).unwrap();
        b.record(Outcome::Failure, &s);
        assert_eq!(b.state(), "open");
        assert_eq!(
            b.admit(&s).err().unwrap().retry_after,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn limits_in_flight_and_pending() {
        let b = Breaker::default();
        let s = BreakerSpec {
            max_in_flight: 2,
            max_pending: 1,
            ..BreakerSpec::default()
        };
        let a1 = b.admit(&s).unwrap();
        let _a2 = b.admit(&s).unwrap();
        assert!(b.admit(&s).is_err());
        drop(a1);
        assert!(b.admit(&s).is_ok());
        let p = b.pend(&s).unwrap();
        assert!(b.pend(&s).is_err());
        drop(p);
        assert!(b.pend(&s).is_ok());
    }
}
