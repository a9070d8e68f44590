//! Balancers: one method, [`Balancer::pick`], over an immutable endpoint list. A balancer
//! is rebuilt whenever a group's membership changes; picks do no I/O and take no lock.

mod load;
mod round_robin;

use super::Endpoint;
use gatehouse_config::spec::BalancerKind;
use std::sync::Arc;

pub use round_robin::RoundRobin;

/// Chooses an endpoint index for a request.
pub trait Balancer: Send + Sync {
    /// An index into `endpoints`, never one listed in `exclude`; `None` when all are excluded.
    fn pick(&self, endpoints: &[Arc<Endpoint>], exclude: &[usize]) -> Option<usize>;
}

/// Builds the balancer named in config for these endpoints.
pub fn build(kind: BalancerKind, endpoints: &[Arc<Endpoint>]) -> Box<dyn Balancer> {
    match kind {
        BalancerKind::RoundRobin => Box::new(RoundRobin::new(
            endpoints.iter().map(|e| e.spec.weight).collect(),
        )),
        BalancerKind::LeastConn => Box::new(load::LeastConn),
        BalancerKind::Random => Box::new(load::Random),
        BalancerKind::PowerOfTwo => Box::new(load::PowerOfTwo),
    }
}
