//! Consistent hashing on a ring (Ketama style): each endpoint owns 160 x weight points,
//! a request goes to the first point at or after its key's hash, walking on past
//! excluded endpoints. Adding or removing one of N endpoints moves about 1/N of keys.
//! The hash is FNV-1a with a splitmix64 finish: stable across builds and runs, so the
//! same key keeps its endpoint (pinned by golden vectors in the tests).

use super::{Balancer, Endpoint, Skip};
use std::sync::Arc;

/// Points per unit of weight.
const POINTS_PER_WEIGHT: u32 = 160;
/// Cap on total points, so huge weights cannot make the ring huge.
const MAX_POINTS: usize = 160 * 1024;

/// The ring, built when a group's membership changes.
pub struct Ring {
    /// (point, endpoint index), sorted by point.
    points: Vec<(u64, usize)>,
}

/// A stable 64-bit hash of bytes.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    // splitmix64's finaliser spreads FNV's weak low bits over the whole word.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ring {
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.spec.weight)).sum();
        let per_weight = if total * u64::from(POINTS_PER_WEIGHT) > MAX_POINTS as u64 {
            (MAX_POINTS as u64 / total.max(1)).max(1)
        } else {
            u64::from(POINTS_PER_WEIGHT)
        };
        let mut points = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            // Points are named by address, not index, so an endpoint keeps its points
            // when others join or leave.
            for v in 0..u64::from(e.spec.weight) * per_weight {
                points.push((hash_bytes(format!("{}-{v}", e.spec.address).as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }
}

impl Balancer for Ring {
    fn pick(&self, endpoints: &[Arc<Endpoint>], exclude: &Skip, key: Option<u64>) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        // No key (say, the header is missing): any point will do.
        let key = key.unwrap_or_else(|| fastrand::u64(..));
        let start = self.points.partition_point(|(p, _)| *p < key);
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|i| *i < endpoints.len() && !exclude.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_endpoints;
    use super::*;

    fn map(ring: &Ring, eps: &[Arc<Endpoint>], keys: u64) -> Vec<String> {
        (0..keys)
            .map(|k| {
                let i = ring
                    .pick(
                        eps,
                        &Skip::tried(&[]),
                        Some(hash_bytes(format!("user-{k}").as_bytes())),
                    )
                    .unwrap();
                eps[i].spec.address.clone()
            })
            .collect()
    }

    #[test]
    fn golden_vectors_pin_the_mapping() {
        // If this fails, a change moved users between endpoints: make it deliberate.
        let eps = test_endpoints(&[1, 1, 1]);
        let ring = Ring::new(&eps);
        let got: Vec<String> = map(&ring, &eps, 8)
            .iter()
            .map(|a| a[a.len() - 4..].to_string())
            .collect();
        assert_eq!(got, GOLDEN);
        assert_eq!(hash_bytes(b"gatehouse"), 0xbb51_043a_b3e1_2fc2_u64);
    }

    const GOLDEN: [&str; 8] = [
        "1000", "1002", "1000", "1000", "1000", "1001", "1001", "1000",
    ];

    #[test]
    fn adding_an_endpoint_moves_about_one_in_n_keys() {
        let four = test_endpoints(&[1, 1, 1, 1]);
        let five = test_endpoints(&[1, 1, 1, 1, 1]);
        let before = map(&Ring::new(&four), &four, 20_000);
        let after = map(&Ring::new(&five), &five, 20_000);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let share = moved as f64 / 20_000.0;
        assert!((0.14..0.26).contains(&share), "moved {share}");
        // Every moved key moved to the new endpoint.
        assert!(before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .all(|(_, b)| b == &five[4].spec.address));
    }

    #[test]
    fn weights_shape_the_share_and_excluded_endpoints_are_skipped() {
        let eps = test_endpoints(&[1, 3]);
        let ring = Ring::new(&eps);
        let m = map(&ring, &eps, 20_000);
        let heavy = m.iter().filter(|a| **a == eps[1].spec.address).count() as f64 / 20_000.0;
        assert!((0.70..0.80).contains(&heavy), "{heavy}");
        for k in 0..1_000u64 {
            assert_eq!(
                ring.pick(&eps, &Skip::tried(&[1]), Some(k.wrapping_mul(0x9e37_79b9))),
                Some(0)
            );
        }
        assert_eq!(ring.pick(&eps, &Skip::tried(&[0, 1]), Some(1)), None);
    }
}
