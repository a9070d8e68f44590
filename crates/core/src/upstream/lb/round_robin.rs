//! Weighted round robin with a precomputed smooth schedule (nginx's algorithm run once at
//! build time), so a pick is one atomic increment and a table read.
//!
//! A slot whose endpoint is out of rotation (drained, down, ejected, in slow start's
//! share, or already tried) is served by a second cursor over the same schedule that
//! only such misses move. Taking the next slot instead would hand the whole share of
//! the missing endpoint to its neighbour in the schedule; the second cursor walks a
//! full weighted cycle, so the share is spread over the others by their weights.

use super::{Balancer, Endpoint, Skip};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest schedule kept; weights are scaled down past it.
const MAX_SCHEDULE: u64 = 4096;

pub struct RoundRobin {
    schedule: Vec<usize>,
    next: AtomicUsize,
    /// The cursor for slots whose endpoint is out of rotation.
    spill: AtomicUsize,
}

impl RoundRobin {
    pub fn new(weights: Vec<u32>) -> Self {
        // Start at a random place so many instances don't hit the same endpoint first.
        let schedule = smooth_schedule(&weights);
        let start = if schedule.is_empty() {
            0
        } else {
            fastrand::usize(..schedule.len())
        };
        RoundRobin {
            schedule,
            next: AtomicUsize::new(start),
            spill: AtomicUsize::new(start),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        exclude: &Skip,
        _key: Option<u64>,
    ) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 || endpoints.is_empty() {
            return None;
        }
        let ok = |i: &usize| *i < endpoints.len() && !exclude.contains(i);
        let slot = self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % n];
        if ok(&slot) {
            return Some(slot);
        }
        (0..n)
            .map(|_| self.schedule[self.spill.fetch_add(1, Ordering::Relaxed) % n])
            .find(ok)
    }
}

/// The smooth weighted round-robin order: each endpoint appears `weight` times (after
/// dividing by the weights' gcd), spread evenly instead of in runs.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let g = weights
        .iter()
        .fold(0u64, |g, w| gcd(g, u64::from(*w)))
        .max(1);
    let mut w: Vec<i64> = weights.iter().map(|x| (u64::from(*x) / g) as i64).collect();
    let mut total: i64 = w.iter().sum();
    if total as u64 > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        w = w
            .iter()
            .map(|x| ((*x as f64 / scale).round() as i64).max(1))
            .collect();
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let Some(best) = (0..w.len()).max_by_key(|i| (current[*i], std::cmp::Reverse(*i))) else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_smooth_and_weighted() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[2, 2]), vec![0, 1]);
        let s = smooth_schedule(&[1, 2, 3]);
        assert_eq!(s.len(), 6);
        for (i, w) in [1, 2, 3].iter().enumerate() {
            assert_eq!(s.iter().filter(|x| **x == i).count(), *w);
        }
    }

    #[test]
    fn huge_weights_are_scaled() {
        let s = smooth_schedule(&[1_000_000, 1]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 1);
        assert!(s.contains(&1));
    }
}
