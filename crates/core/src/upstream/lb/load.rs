//! Load-aware and random balancers over the endpoints' in-flight counters: least
//! connections (weight-aware), weighted random, and power of two choices. Picks read
//! atomics only: no lock, no I/O.

use super::{Balancer, Endpoint, Skip};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Fewest requests in flight per unit of weight; ties are broken by weighted random, so
/// equal endpoints share the load in proportion to their weights.
pub struct LeastConn;

/// Weighted random.
pub struct Random;

/// Two uniform random picks; the one with the lower expected wait wins: its latency
/// EWMA times its requests in flight, per unit of weight (Mitzenmacher's power of two
/// choices over Finagle's peak EWMA, as in Linkerd).
pub struct PowerOfTwo;

/// In-flight requests scaled by weight, compared without division: a/wa < b/wb.
fn lighter(a: &Endpoint, b: &Endpoint) -> bool {
    let la = a.in_flight.load(Ordering::Relaxed) as u64 * u64::from(b.spec.weight);
    let lb = b.in_flight.load(Ordering::Relaxed) as u64 * u64::from(a.spec.weight);
    la < lb
}

/// A weighted random index among those not excluded.
fn weighted_random(endpoints: &[Arc<Endpoint>], exclude: &Skip) -> Option<usize> {
    weighted_among(endpoints, |i| !exclude.contains(&i))
}

/// A weighted random index among those `keep` accepts.
fn weighted_among(endpoints: &[Arc<Endpoint>], keep: impl Fn(usize) -> bool) -> Option<usize> {
    let weight = |i: usize| u64::from(endpoints[i].spec.weight);
    let total: u64 = (0..endpoints.len()).filter(|i| keep(*i)).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(..total);
    for i in (0..endpoints.len()).filter(|i| keep(*i)) {
        if r < weight(i) {
            return Some(i);
        }
        r -= weight(i);
    }
    None
}

/// A uniform random index among those not excluded.
fn uniform_random(endpoints: &[Arc<Endpoint>], exclude: &Skip) -> Option<usize> {
    let live = (0..endpoints.len()).filter(|i| !exclude.contains(i));
    let n = live.clone().count();
    if n == 0 {
        return None;
    }
    live.clone().nth(fastrand::usize(..n))
}

impl Balancer for LeastConn {
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        exclude: &Skip,
        _key: Option<u64>,
    ) -> Option<usize> {
        // First pass: the lightest load per weight. Second: a weighted random choice
        // among the endpoints that tie with it, so an idle group still follows weights.
        let live = (0..endpoints.len()).filter(|i| !exclude.contains(i));
        let best = live.reduce(|best, i| {
            if lighter(&endpoints[i], &endpoints[best]) {
                i
            } else {
                best
            }
        })?;
        let tie = |i: usize| !exclude.contains(&i) && !lighter(&endpoints[best], &endpoints[i]);
        weighted_among(endpoints, tie).or(Some(best))
    }
}

impl Balancer for Random {
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        exclude: &Skip,
        _key: Option<u64>,
    ) -> Option<usize> {
        weighted_random(endpoints, exclude)
    }
}

/// Expected wait of one more request: (EWMA latency + 1 µs) × (in flight + 1) / weight.
/// Before any response the latency term is equal for all, leaving in-flight counts.
fn cost(e: &Endpoint) -> f64 {
    let latency = e.health.ewma().as_micros() as f64 + 1.0;
    let load = e.in_flight.load(Ordering::Relaxed) as f64 + 1.0;
    latency * load / f64::from(e.spec.weight.max(1))
}

impl Balancer for PowerOfTwo {
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        exclude: &Skip,
        _key: Option<u64>,
    ) -> Option<usize> {
        // Uniform choices: the cost already divides by weight, and weighted choices
        // on top would count the weights twice.
        let a = uniform_random(endpoints, exclude)?;
        let b = uniform_random(endpoints, exclude)?;
        Some(if cost(&endpoints[b]) < cost(&endpoints[a]) {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_endpoints as endpoints;
    use super::*;

    fn counts(b: &dyn Balancer, eps: &[Arc<Endpoint>], exclude: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; eps.len()];
        for _ in 0..n {
            c[b.pick(eps, &Skip::tried(exclude), None).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn weighted_random_converges_to_the_weights() {
        fastrand::seed(7);
        let eps = endpoints(&[1, 2, 3]);
        let c = counts(&Random, &eps, &[], 60_000);
        for (i, w) in [1.0, 2.0, 3.0].iter().enumerate() {
            let share = c[i] as f64 / 60_000.0;
            assert!((share - w / 6.0).abs() < 0.01, "endpoint {i}: {share}");
        }
    }

    #[test]
    fn no_balancer_picks_an_excluded_endpoint() {
        fastrand::seed(11);
        let eps = endpoints(&[1, 5, 1, 2]);
        let all: [&dyn Balancer; 3] = [&LeastConn, &Random, &PowerOfTwo];
        for b in all {
            for exclude in [vec![1], vec![0, 1, 2], vec![3, 1]] {
                let c = counts(b, &eps, &exclude, 2_000);
                for i in &exclude {
                    assert_eq!(c[*i], 0);
                }
            }
            assert_eq!(b.pick(&eps, &Skip::tried(&[0, 1, 2, 3]), None), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_balancer_picks_an_unhealthy_endpoint() {
        use super::super::{build, Usable};
        use gatehouse_config::spec::BalancerKind::*;
        fastrand::seed(13);
        let eps = endpoints(&[1, 5, 1, 2]);
        eps[1].health.checked(false, None, 1, 1); // down
        eps[3].health.set_draining(true);
        for kind in [RoundRobin, LeastConn, Random, PowerOfTwo, ConsistentHash] {
            let b = build(kind, &eps);
            let skip = Skip::new(&[], Usable::Healthy(&eps));
            for k in 0..2_000u64 {
                let i = b
                    .pick(&eps, &skip, Some(k.wrapping_mul(0x9e37_79b9)))
                    .unwrap();
                assert!(i == 0 || i == 2, "{kind:?} picked {i}");
            }
            // Panic mode still skips the draining one.
            let all = Skip::new(&[0, 2], Usable::NotDraining(&eps));
            assert_eq!(b.pick(&eps, &all, Some(1)), Some(1), "{kind:?}");
        }
    }

    #[test]
    fn least_conn_picks_the_lightest_per_weight() {
        let eps = endpoints(&[1, 2, 1]);
        eps[0].in_flight.store(3, Ordering::Relaxed);
        eps[1].in_flight.store(4, Ordering::Relaxed); // 2 per unit of weight
        eps[2].in_flight.store(5, Ordering::Relaxed);
        for _ in 0..50 {
            assert_eq!(LeastConn.pick(&eps, &Skip::tried(&[]), None), Some(1));
        }
        assert_eq!(LeastConn.pick(&eps, &Skip::tried(&[1]), None), Some(0));
    }

    #[test]
    fn p2c_avoids_a_loaded_endpoint() {
        fastrand::seed(3);
        let eps = endpoints(&[1, 1, 1, 1]);
        eps[2].in_flight.store(100, Ordering::Relaxed);
        let c = counts(&PowerOfTwo, &eps, &[], 40_000);
        // Endpoint 2 wins only when both choices land on it: 1/16 of picks.
        let share = c[2] as f64 / 40_000.0;
        assert!((share - 1.0 / 16.0).abs() < 0.01, "{share}");
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_prefers_the_faster_endpoint_by_ewma() {
        fastrand::seed(5);
        let eps = endpoints(&[1, 1]);
        eps[0]
            .health
            .observe_latency(std::time::Duration::from_millis(50));
        eps[1]
            .health
            .observe_latency(std::time::Duration::from_millis(5));
        // Both choices differ half the time; the fast one wins those and ties split.
        let c = counts(&PowerOfTwo, &eps, &[], 20_000);
        let slow = c[0] as f64 / 20_000.0;
        assert!((slow - 0.25).abs() < 0.02, "{slow}");
        // Enough requests in flight on the fast one make the slow one cheaper.
        eps[1].in_flight.store(20, Ordering::Relaxed);
        let c = counts(&PowerOfTwo, &eps, &[], 20_000);
        assert!(c[0] > c[1], "{c:?}");
    }
}
