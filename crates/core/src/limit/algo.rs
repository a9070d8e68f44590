//! The counting arithmetic of every algorithm, on plain numbers so that the local store,
//! the Redis scripts (which mirror it in Lua) and the tests agree: GCRA, the sliding
//! window counter, and the fixed window of a calendar quota. Times are nanoseconds on
//! one clock; nothing here reads a clock.

use std::time::Duration;

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests left now (after this one, when it was allowed).
    pub remaining: u64,
    /// Until the policy's count is whole again (GCRA) or its window ends.
    pub reset: Duration,
    /// Until a refused request would pass; zero when allowed.
    pub retry_after: Duration,
}

/// GCRA: each request moves the theoretical arrival time (TAT) on by one emission
/// interval; a request passes while the TAT runs at most `burst` intervals ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub interval: u64,
    pub burst: u64,
}

/// Sliding window counter: this window's count plus the previous one's, weighted by how
/// much of it still overlaps the last `window` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub window: u64,
    pub limit: u64,
}

/// A sliding window's stored state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowState {
    pub index: u64,
    pub current: u64,
    pub previous: u64,
}

/// A fixed window (a calendar quota): `count` of `limit` used in the window that began
/// at `start` (seconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedState {
    pub start: i64,
    pub count: u64,
}

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

// === impl Gcra ===

impl Gcra {
    pub fn new(count: f64, period: Duration, burst: u64) -> Gcra {
        let interval = (period.as_nanos() as f64 / count).round().max(1.0) as u64;
        Gcra {
            interval,
            burst: burst.max(1),
        }
    }

    fn tolerance(&self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// One request at `now` against the stored TAT: the TAT to store if it passes.
    pub fn step(&self, tat: u64, now: u64) -> (Option<u64>, Verdict) {
        let base = tat.max(now);
        let next = base.saturating_add(self.interval);
        let ahead = next - now;
        let tol = self.tolerance();
        if ahead > tol {
            let v = Verdict {
                allowed: false,
                remaining: 0,
                reset: ns(base - now),
                retry_after: ns(ahead - tol),
            };
            return (None, v);
        }
        let v = Verdict {
            allowed: true,
            remaining: (tol - ahead) / self.interval,
            reset: ns(ahead),
            retry_after: Duration::ZERO,
        };
        (Some(next), v)
    }

    /// The state a check would see, without counting a request.
    pub fn peek(&self, tat: u64, now: u64) -> Verdict {
        let ahead = tat.saturating_sub(now);
        Verdict {
            allowed: ahead < self.tolerance(),
            remaining: (self.tolerance().saturating_sub(ahead)) / self.interval,
            reset: ns(ahead),
            retry_after: Duration::ZERO,
        }
    }

    /// How long a key's state matters: after this it equals a fresh key's.
    pub fn life(&self) -> Duration {
        ns(self.tolerance())
    }

    /// Gives back one request (a later policy refused it).
    pub fn refund(&self, tat: u64) -> u64 {
        tat.saturating_sub(self.interval)
    }
}

// === impl Window ===

impl Window {
    /// Rolls the state forward to the window `now` is in.
    fn roll(&self, s: WindowState, now: u64) -> WindowState {
        let index = now / self.window;
        match index.checked_sub(s.index) {
            Some(0) => s,
            Some(1) => WindowState {
                index,
                current: 0,
                previous: s.current,
            },
            _ => WindowState {
                index,
                ..WindowState::default()
            },
        }
    }

    /// The weighted count at `now` of a rolled state, and the nanoseconds into the window.
    fn estimate(&self, s: &WindowState, now: u64) -> (f64, u64) {
        let into = now - s.index * self.window;
        let weight = (self.window - into) as f64 / self.window as f64;
        (s.previous as f64 * weight + s.current as f64, into)
    }

    pub fn step(&self, s: WindowState, now: u64) -> (Option<WindowState>, Verdict) {
        let s = self.roll(s, now);
        let (est, into) = self.estimate(&s, now);
        let left = self.window - into;
        let limit = self.limit as f64;
        if est + 1.0 > limit {
            let v = Verdict {
                allowed: false,
                remaining: 0,
                reset: ns(left),
                retry_after: ns(self.wait(&s, into)),
            };
            return (None, v);
        }
        let next = WindowState {
            current: s.current + 1,
            ..s
        };
        let v = Verdict {
            allowed: true,
            remaining: (limit - est - 1.0).floor().max(0.0) as u64,
            reset: ns(left),
            retry_after: Duration::ZERO,
        };
        (Some(next), v)
    }

    /// Nanoseconds until the estimate leaves room for one more request.
    fn wait(&self, s: &WindowState, into: u64) -> u64 {
        let w = self.window as f64;
        let room = self.limit as f64 - 1.0;
        let cur = s.current as f64;
        if cur <= room && s.previous > 0 {
            // previous * (w - t) / w + cur <= room  =>  t >= w - (room - cur) * w / previous
            let t = w - (room - cur) * w / s.previous as f64;
            return (t.ceil() as u64).saturating_sub(into).max(1);
        }
        // This window alone is over: wait for it to end and slide far enough past.
        let t = if cur > 0.0 { w - room * w / cur } else { 0.0 };
        (self.window - into) + t.max(0.0).ceil() as u64
    }

    pub fn peek(&self, s: WindowState, now: u64) -> Verdict {
        let s = self.roll(s, now);
        let (est, into) = self.estimate(&s, now);
        Verdict {
            allowed: est + 1.0 <= self.limit as f64,
            remaining: (self.limit as f64 - est).floor().max(0.0) as u64,
            reset: ns(self.window - into),
            retry_after: Duration::ZERO,
        }
    }

    pub fn life(&self) -> Duration {
        ns(self.window.saturating_mul(2))
    }

    pub fn refund(&self, s: WindowState) -> WindowState {
        WindowState {
            current: s.current.saturating_sub(1),
            ..s
        }
    }
}

// === impl FixedState ===

impl FixedState {
    /// One request in the window `[start, end)` (seconds) against `limit`; `now` in
    /// seconds (fractional) since the epoch.
    pub fn step(self, limit: u64, start: i64, end: i64, now: f64) -> (Option<FixedState>, Verdict) {
        let used = if self.start == start { self.count } else { 0 };
        let reset = Duration::from_secs_f64((end as f64 - now).max(0.0));
        if used + 1 > limit {
            let v = Verdict {
                allowed: false,
                remaining: 0,
                reset,
                retry_after: reset,
            };
            return (None, v);
        }
        let next = FixedState {
            start,
            count: used + 1,
        };
        let v = Verdict {
            allowed: true,
            remaining: limit - used - 1,
            reset,
            retry_after: Duration::ZERO,
        };
        (Some(next), v)
    }

    pub fn used(self, start: i64) -> u64 {
        if self.start == start {
            self.count
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        let g = Gcra::new(10.0, Duration::from_secs(1), 5);
        assert_eq!(g.interval, S / 10);
        let mut tat = 0;
        let now = 100 * S;
        for left in (0..5).rev() {
            let (next, v) = g.step(tat, now);
            assert!(v.allowed);
            assert_eq!(v.remaining, left);
            tat = next.unwrap();
        }
        let (next, v) = g.step(tat, now);
        assert!(next.is_none() && !v.allowed);
        assert_eq!(v.retry_after, Duration::from_millis(100));
        // One interval later exactly one more passes.
        let later = now + S / 10;
        let (next, v) = g.step(tat, later);
        assert!(v.allowed && v.remaining == 0);
        assert!(!g.step(next.unwrap(), later).1.allowed);
        // Once the TAT is in the past the key is as good as new.
        assert_eq!(g.step(tat, now + 10 * S).1.remaining, 4);
        assert_eq!(g.life(), Duration::from_millis(500));
    }

    #[test]
    fn gcra_reset_counts_to_a_full_bucket() {
        let g = Gcra::new(1.0, Duration::from_secs(1), 3);
        let (tat, v) = g.step(0, 10 * S);
        assert_eq!(v.reset, Duration::from_secs(1));
        let (_, v) = g.step(tat.unwrap(), 10 * S);
        assert_eq!(v.reset, Duration::from_secs(2));
        assert_eq!(g.peek(tat.unwrap(), 10 * S).remaining, 2);
        assert_eq!(g.refund(tat.unwrap()), 10 * S);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let w = Window {
            window: 10 * S,
            limit: 10,
        };
        let mut s = WindowState::default();
        for _ in 0..10 {
            let (n, v) = w.step(s, 5 * S);
            assert!(v.allowed);
            s = n.unwrap();
        }
        let (_, v) = w.step(s, 5 * S);
        assert!(!v.allowed);
        assert_eq!(v.reset, Duration::from_secs(5));
        // Half-way through the next window, half of the previous count still weighs.
        let (n, v) = w.step(s, 15 * S);
        assert!(v.allowed);
        assert_eq!(v.remaining, 4);
        let mut s = n.unwrap();
        for _ in 0..4 {
            s = w.step(s, 15 * S).0.unwrap();
        }
        let (_, v) = w.step(s, 15 * S);
        assert!(!v.allowed);
        // 10 * (10 - t) / 10 + 5 <= 9  =>  t >= 6 s into the window: one second on.
        assert_eq!(v.retry_after, Duration::from_secs(1));
        assert!(w.step(s, 16 * S).1.allowed);
        // Two windows on, nothing is left.
        assert_eq!(w.peek(s, 30 * S).remaining, 10);
    }

    #[test]
    fn sliding_window_over_in_its_own_window_waits_past_its_end() {
        let w = Window {
            window: 10 * S,
            limit: 2,
        };
        let s = WindowState {
            index: 0,
            current: 2,
            previous: 0,
        };
        let (_, v) = w.step(s, 4 * S);
        assert!(!v.allowed);
        // 6 s to the end, then 2 * (10 - t) / 10 <= 1  =>  t >= 5 s.
        assert_eq!(v.retry_after, Duration::from_secs(11));
        assert!(!w.step(s, 14 * S).1.allowed);
        assert!(w.step(s, 15 * S).1.allowed);
    }

    #[test]
    fn a_fixed_window_starts_over_in_the_next_one() {
        let s = FixedState { start: 0, count: 0 };
        let (s, v) = s.step(2, 0, 100, 10.0);
        assert!(v.allowed && v.remaining == 1);
        let (s, _) = s.unwrap().step(2, 0, 100, 20.0);
        let (none, v) = s.unwrap().step(2, 0, 100, 30.0);
        assert!(none.is_none() && !v.allowed);
        assert_eq!(v.retry_after, Duration::from_secs(70));
        let (s2, v) = s.unwrap().step(2, 100, 200, 100.5);
        assert!(v.allowed && v.remaining == 1 && s2.unwrap().count == 1);
        assert_eq!(s.unwrap().used(100), 0);
    }
}
