//! The fixed run behind the closing note's distribution table: 100,000 picks over three
//! endpoints of weights 1, 2 and 3 for every balancer, with 8 requests kept in flight
//! (each released 8 picks later, oldest first) so the load-aware balancers see load.
//! Hashing balancers get a distinct key per request. Run with `--nocapture` to print it.
//! Load-aware balancers get a looser bound: with 8 requests in flight, in-flight counts
//! are too coarse to hit 1:2:3 exactly.

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

const PICKS: usize = 100_000;
const IN_FLIGHT: usize = 8;

fn run(kind: BalancerKind) -> [f64; 3] {
    let eps = test_endpoints(&[1, 2, 3]);
    let b = build(kind, &eps);
    let mut held = VecDeque::new();
    let mut counts = [0usize; 3];
    let none = Skip::tried(&[]);
    for k in 0..PICKS as u64 {
        if held.len() == IN_FLIGHT {
            let i: usize = held.pop_front().unwrap_or_default();
            eps[i].in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let key = hash_bytes(&k.to_le_bytes());
        let i = b.pick(&eps, &none, Some(key)).unwrap();
        eps[i].in_flight.fetch_add(1, Ordering::Relaxed);
        held.push_back(i);
        counts[i] += 1;
    }
    counts.map(|c| c as f64 / PICKS as f64)
}

#[test]
fn every_balancer_follows_the_weights_over_a_fixed_run() {
    fastrand::seed(2026);
    let want = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
    for (kind, tolerance) in [
        (BalancerKind::RoundRobin, 0.001),
        (BalancerKind::Random, 0.01),
        (BalancerKind::LeastConn, 0.04),
        (BalancerKind::PowerOfTwo, 0.06),
        (BalancerKind::ConsistentHash, 0.04),
    ] {
        let got = run(kind);
        println!(
            "{kind:?}: {:.1}% / {:.1}% / {:.1}%",
            got[0] * 100.0,
            got[1] * 100.0,
            got[2] * 100.0
        );
        for i in 0..3 {
            assert!(
                (got[i] - want[i]).abs() < tolerance,
                "{kind:?} endpoint {i}: {got:?}"
            );
        }
    }
}
