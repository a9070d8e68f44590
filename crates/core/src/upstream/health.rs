//! The health of one endpoint: what active checks, outlier ejection and draining say,
//! folded into one atomic flag word that every pick reads without a lock, plus the
//! counters and timestamps the admin API shows.
//!
//! Times are kept as milliseconds since the endpoint was created (`born`), on tokio's
//! clock, so that tests can drive them with a paused clock.

use gatehouse_config::spec::OutlierSpec;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Active checks failed `fall` times in a row.
const DOWN: u8 = 1;
/// Ejected by outlier detection until `ejected_until`.
const EJECTED: u8 = 2;
/// Drained by the admin API or removed by a reload: no new requests.
const DRAINING: u8 = 4;

/// Health state of one endpoint.
pub struct Health {
    born: Instant,
    flags: AtomicU8,
    /// Passive: failures in a row, reset by any success.
    consecutive: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Set while a slow-start ramp is running, so picks skip the clock otherwise.
    ramping: AtomicBool,
    ramp_from_ms: AtomicU64,
    ewma_us: AtomicU64,
    last_sample_ms: AtomicU64,
    pub ejections: AtomicU64,
    pub transitions: AtomicU64,
    check: Mutex<CheckState>,
    outlier: Mutex<OutlierState>,
}

/// Active-check bookkeeping: the streak and the last result.
#[derive(Default, Clone)]
pub struct CheckState {
    pub successes: u32,
    pub failures: u32,
    pub last_ms: Option<u64>,
    pub last_ok: Option<bool>,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct OutlierState {
    /// Ejections in the current back-off series.
    series: u32,
    restored_at_ms: u64,
}

/// What one request did to an endpoint, for outlier detection and the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx, a connect failure or a timeout.
    Failure,
}

/// What changed after an active check, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    WentDown,
    CameUp,
}

// === impl Health ===

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Health {
            born: Instant::now(),
            flags: AtomicU8::new(0),
            consecutive: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ramping: AtomicBool::new(false),
            ramp_from_ms: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
            last_sample_ms: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            check: Mutex::new(CheckState::default()),
            outlier: Mutex::new(OutlierState::default()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.born)
            .as_millis() as u64
    }

    /// Whether the balancer may send new requests here. An ejection that has run out is
    /// lifted here, lazily, so no timer task is needed per ejection.
    pub fn usable(&self) -> bool {
        let f = self.flags.load(Ordering::Acquire);
        if f == 0 {
            return true;
        }
        if f == EJECTED && self.now_ms() >= self.ejected_until_ms.load(Ordering::Acquire) {
            self.restore();
            return self.flags.load(Ordering::Acquire) == 0;
        }
        false
    }

    pub fn is_down(&self) -> bool {
        self.flags.load(Ordering::Acquire) & DOWN != 0
    }

    pub fn is_draining(&self) -> bool {
        self.flags.load(Ordering::Acquire) & DRAINING != 0
    }

    /// Ejected now (an ejection that has run out counts as lifted).
    pub fn is_ejected(&self) -> bool {
        self.flags.load(Ordering::Acquire) & EJECTED != 0
            && self.now_ms() < self.ejected_until_ms.load(Ordering::Acquire)
    }

    /// Time left on the ejection, if any.
    pub fn ejection_left(&self) -> Option<Duration> {
        let left = self
            .ejected_until_ms
            .load(Ordering::Acquire)
            .checked_sub(self.now_ms())?;
        (self.flags.load(Ordering::Acquire) & EJECTED != 0 && left > 0)
            .then(|| Duration::from_millis(left))
    }

    pub fn set_draining(&self, on: bool) {
        if on {
            self.flags.fetch_or(DRAINING, Ordering::AcqRel);
        } else if self.flags.fetch_and(!DRAINING, Ordering::AcqRel) & DRAINING != 0 {
            self.start_ramp();
        }
    }

    fn restore(&self) {
        if self.flags.fetch_and(!EJECTED, Ordering::AcqRel) & EJECTED != 0 {
            if let Ok(mut o) = self.outlier.lock() {
                o.restored_at_ms = self.now_ms();
            }
            self.transitions.fetch_add(1, Ordering::Relaxed);
            self.start_ramp();
            tracing::info!("endpoint restored after ejection");
        }
    }

    /// Starts a slow-start ramp (a recovered, undrained or newly added endpoint).
    pub fn start_ramp(&self) {
        self.ramp_from_ms.store(self.now_ms(), Ordering::Release);
        self.ramping.store(true, Ordering::Release);
    }

    /// The share of its weight this endpoint gets during slow start, in (0, 1].
    pub fn ramp(&self, window: Duration) -> f64 {
        if window.is_zero() || !self.ramping.load(Ordering::Acquire) {
            return 1.0;
        }
        let elapsed = self
            .now_ms()
            .saturating_sub(self.ramp_from_ms.load(Ordering::Acquire));
        let share = elapsed as f64 / window.as_millis().max(1) as f64;
        if share >= 1.0 {
            self.ramping.store(false, Ordering::Release);
            return 1.0;
        }
        // Never zero: a recovering endpoint must still see some traffic to prove itself.
        share.max(0.05)
    }

    /// Records a passive outcome. Returns true when `outlier` says this endpoint should
    /// now be ejected (the caller checks the group's ejection cap, then calls `eject`).
    pub fn record(&self, outcome: Outcome, outlier: Option<&OutlierSpec>) -> bool {
        match outcome {
            Outcome::Success => {
                // Read first: a store on every success would bounce the cache line.
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                false
            }
            Outcome::Failure => {
                let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                outlier.is_some_and(|o| n >= o.consecutive_failures)
                    && self.flags.load(Ordering::Acquire) & EJECTED == 0
            }
        }
    }

    /// Ejects for the next back-off of the series: base × the ejections in a row, capped
    /// at max. A series ends once the endpoint has stayed in for `max_ejection`.
    pub fn eject(&self, o: &OutlierSpec) -> Duration {
        let now = self.now_ms();
        let series = match self.outlier.lock() {
            Ok(mut s) => {
                let quiet = now.saturating_sub(s.restored_at_ms);
                if s.series > 0 && quiet >= o.max_ejection.as_millis() as u64 {
                    s.series = 0;
                }
                s.series += 1;
                s.series
            }
            Err(_) => 1,
        };
        let d = o.base_ejection.saturating_mul(series).min(o.max_ejection);
        self.ejected_until_ms
            .store(now + d.as_millis() as u64, Ordering::Release);
        self.flags.fetch_or(EJECTED, Ordering::AcqRel);
        self.consecutive.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.transitions.fetch_add(1, Ordering::Relaxed);
        d
    }

    /// Applies one active-check result against the rise/fall thresholds.
    pub fn checked(&self, ok: bool, error: Option<String>, rise: u32, fall: u32) -> Transition {
        let now = self.now_ms();
        let Ok(mut c) = self.check.lock() else {
            return Transition::None;
        };
        c.last_ms = Some(now);
        c.last_ok = Some(ok);
        c.last_error = error;
        let down = self.is_down();
        if ok {
            c.failures = 0;
            c.successes = c.successes.saturating_add(1);
            if down && c.successes >= rise {
                self.flags.fetch_and(!DOWN, Ordering::AcqRel);
                self.transitions.fetch_add(1, Ordering::Relaxed);
                self.start_ramp();
                return Transition::CameUp;
            }
        } else {
            c.successes = 0;
            c.failures = c.failures.saturating_add(1);
            if !down && c.failures >= fall {
                self.flags.fetch_or(DOWN, Ordering::AcqRel);
                self.transitions.fetch_add(1, Ordering::Relaxed);
                return Transition::WentDown;
            }
        }
        Transition::None
    }

    pub fn check_state(&self) -> CheckState {
        self.check.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Folds a response-header latency into the peak-sensitive EWMA used by `p2c`: a
    /// slower sample is taken at once, faster ones pull the average down with a decay
    /// that depends on the time since the last sample (10 s time constant).
    pub fn observe_latency(&self, sample: Duration) {
        const TAU_MS: f64 = 10_000.0;
        let now = self.now_ms();
        let s = sample.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        let last = self.last_sample_ms.swap(now, Ordering::Relaxed);
        let next = if s >= old || old == 0 {
            s
        } else {
            let w = (-((now.saturating_sub(last)) as f64) / TAU_MS).exp();
            (old as f64 * w + s as f64 * (1.0 - w)) as u64
        };
        self.ewma_us.store(next.max(1), Ordering::Relaxed);
    }

    /// The latency average, decayed towards zero while no sample comes in, so an
    /// endpoint that was slow once gets tried again.
    pub fn ewma(&self) -> Duration {
        const TAU_MS: f64 = 10_000.0;
        let v = self.ewma_us.load(Ordering::Relaxed);
        if v == 0 {
            return Duration::ZERO;
        }
        let idle = self
            .now_ms()
            .saturating_sub(self.last_sample_ms.load(Ordering::Relaxed));
        Duration::from_micros((v as f64 * (-(idle as f64) / TAU_MS).exp()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierSpec {
        OutlierSpec {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 100,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_backs_off_and_lifts_on_time() {
        let h = Health::new();
        let o = outlier();
        assert!(!h.record(Outcome::Failure, Some(&o)));
        assert!(!h.record(Outcome::Failure, Some(&o)));
        assert!(h.record(Outcome::Failure, Some(&o)));
        assert_eq!(h.eject(&o), Duration::from_secs(10));
        assert!(!h.usable());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!h.usable());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(h.usable());
        // Ejected again soon after: twice as long, then capped at max.
        assert_eq!(h.eject(&o), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(h.usable());
        assert_eq!(h.eject(&o), Duration::from_secs(25));
        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(h.usable());
        // In for longer than max_ejection: the series starts over.
        tokio::time::advance(Duration::from_secs(25)).await;
        assert_eq!(h.eject(&o), Duration::from_secs(10));
        assert_eq!(h.ejections.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_streak() {
        let h = Health::new();
        let o = outlier();
        h.record(Outcome::Failure, Some(&o));
        h.record(Outcome::Failure, Some(&o));
        h.record(Outcome::Success, Some(&o));
        assert!(!h.record(Outcome::Failure, Some(&o)));
        assert!(h.usable());
    }

    #[tokio::test(start_paused = true)]
    async fn rise_and_fall_thresholds() {
        let h = Health::new();
        assert_eq!(h.checked(false, None, 2, 3), Transition::None);
        assert_eq!(h.checked(false, None, 2, 3), Transition::None);
        assert_eq!(h.checked(true, None, 2, 3), Transition::None);
        assert!(h.usable(), "a success in between restarts the fall count");
        for _ in 0..2 {
            h.checked(false, None, 2, 3);
        }
        assert_eq!(
            h.checked(false, Some("refused".into()), 2, 3),
            Transition::WentDown
        );
        assert!(!h.usable());
        assert_eq!(h.checked(true, None, 2, 3), Transition::None);
        assert!(!h.usable());
        assert_eq!(h.checked(true, None, 2, 3), Transition::CameUp);
        assert!(h.usable());
        assert_eq!(h.transitions.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_the_share_up_over_the_window() {
        let h = Health::new();
        let w = Duration::from_secs(10);
        assert_eq!(h.ramp(w), 1.0, "a fresh endpoint at startup is not ramped");
        h.checked(false, None, 1, 1);
        h.checked(true, None, 1, 1);
        assert_eq!(h.ramp(w), 0.05);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!((h.ramp(w) - 0.5).abs() < 0.01);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(h.ramp(w), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn draining_blocks_new_requests_until_undrained() {
        let h = Health::new();
        h.set_draining(true);
        assert!(!h.usable() && h.is_draining());
        h.set_draining(false);
        assert!(h.usable());
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_takes_peaks_at_once_and_decays() {
        let h = Health::new();
        h.observe_latency(Duration::from_millis(10));
        h.observe_latency(Duration::from_millis(100));
        assert_eq!(h.ewma(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(10)).await;
        h.observe_latency(Duration::from_millis(10));
        let e = h.ewma().as_millis();
        assert!((40..50).contains(&e), "{e}");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(h.ewma() < Duration::from_millis(3));
    }
}
