//! Retry policy helpers: the retry budget (retries may be at most a share of the
//! group's recent requests, plus a small floor per second, so retries cannot multiply
//! an outage) and the back-off between tries (exponential with full jitter).

use gatehouse_config::spec::RetrySpec;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The budget's window, in one-second buckets.
const WINDOW_SECS: u64 = 10;

/// Requests and retries over the last ten seconds.
pub struct Budget {
    /// Retries granted since start, for metrics.
    pub retries: std::sync::atomic::AtomicU64,
    born: Instant,
    buckets: Mutex<[Bucket; WINDOW_SECS as usize]>,
}

#[derive(Default, Clone, Copy)]
struct Bucket {
    second: u64,
    requests: u64,
    retries: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            retries: std::sync::atomic::AtomicU64::new(0),
            born: Instant::now(),
            buckets: Mutex::new([Bucket::default(); WINDOW_SECS as usize]),
        }
    }
}

impl Budget {
    fn second(&self) -> u64 {
        // Offset by the window so that second 0 never looks current to an empty bucket.
        Instant::now()
            .saturating_duration_since(self.born)
            .as_secs()
            + WINDOW_SECS
    }

    fn with_current<R>(&self, f: impl FnOnce(&mut [Bucket], usize) -> R) -> Option<R> {
        let now = self.second();
        let mut b = self.buckets.lock().ok()?;
        let i = (now % WINDOW_SECS) as usize;
        if b[i].second != now {
            b[i] = Bucket {
                second: now,
                ..Bucket::default()
            };
        }
        Some(f(&mut b[..], i))
    }

    /// Counts a first try.
    pub fn request(&self) {
        self.with_current(|b, i| b[i].requests += 1);
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_retry(&self, spec: &RetrySpec) -> bool {
        let now = self.second();
        self.with_current(|b, i| {
            let live = b.iter().filter(|x| x.second + WINDOW_SECS > now);
            let (req, ret) = live.fold((0, 0), |(q, t), x| (q + x.requests, t + x.retries));
            let allowed = u64::from(spec.min_retries_per_second) * WINDOW_SECS
                + req * u64::from(spec.budget_percent) / 100;
            let ok = ret < allowed;
            if ok {
                b[i].retries += 1;
            }
            ok
        })
        .inspect(|ok| {
            if *ok {
                self.retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap_or(false)
    }
}

/// The pause before retry number `n` (1-based): uniform in [0, min(max, base × 2^(n-1))].
pub fn backoff(spec: &RetrySpec, n: u32) -> Duration {
    let cap = spec
        .backoff
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(spec.max_backoff);
    Duration::from_micros(fastrand::u64(..=cap.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RetrySpec {
        RetrySpec {
            retries: 2,
            on_status: vec![503],
            on_timeout: true,
            per_try_timeout: None,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            budget_percent: 20,
            min_retries_per_second: 1,
            buffer_body: 1024,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_is_a_share_of_recent_requests_plus_a_floor() {
        let b = Budget::default();
        let s = spec();
        for _ in 0..100 {
            b.request();
        }
        // 20% of 100 plus 1 per second over 10 seconds.
        let granted = (0..100).filter(|_| b.try_retry(&s)).count();
        assert_eq!(granted, 30);
        // Ten seconds later the window has forgotten them: only the floor is left.
        tokio::time::advance(Duration::from_secs(10)).await;
        let granted = (0..100).filter(|_| b.try_retry(&s)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = spec();
        for _ in 0..200 {
            assert!(backoff(&s, 1) <= Duration::from_millis(10));
            assert!(backoff(&s, 2) <= Duration::from_millis(20));
            assert!(backoff(&s, 9) <= Duration::from_millis(50));
        }
        assert!((0..200).any(|_| backoff(&s, 9) > Duration::from_millis(20)));
    }
}
