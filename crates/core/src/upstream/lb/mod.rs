//! Balancers: one method, [`Balancer::pick`], over an immutable endpoint list. A balancer
//! is rebuilt whenever a group's membership changes; picks do no I/O and take no lock.

#[cfg(test)]
mod distribution;
mod load;
mod ring;
mod round_robin;
#[cfg(test)]
mod spread;

use super::Endpoint;
use gatehouse_config::spec::BalancerKind;
use std::sync::Arc;

pub use ring::hash_bytes;

use gatehouse_config::spec::HashOn;
use http::HeaderMap;
pub use round_robin::RoundRobin;
use std::net::IpAddr;

/// Chooses an endpoint index for a request.
pub trait Balancer: Send + Sync {
    /// An index into `endpoints`, never one that `exclude` contains; `None` when all are
    /// excluded. `key` is the request's hash key, for hashing balancers.
    fn pick(&self, endpoints: &[Arc<Endpoint>], exclude: &Skip, key: Option<u64>) -> Option<usize>;
}

/// The endpoints a pick must pass over: those this request already tried and, by
/// [`Usable`], those whose health rules them out. Checked lazily, so a pick allocates
/// nothing and reads one atomic per candidate.
pub struct Skip<'a> {
    tried: &'a [usize],
    usable: Usable<'a>,
}

/// Which health states a pick accepts.
pub enum Usable<'a> {
    /// Healthy: not down, ejected or draining.
    Healthy(&'a [Arc<Endpoint>]),
    /// Panic mode: every endpoint that is not draining.
    NotDraining(&'a [Arc<Endpoint>]),
    /// Any endpoint (balancer unit tests).
    Any,
}

impl<'a> Skip<'a> {
    pub fn new(tried: &'a [usize], usable: Usable<'a>) -> Self {
        Skip { tried, usable }
    }

    /// Skips only what was tried, whatever the health.
    pub fn tried(tried: &'a [usize]) -> Self {
        Skip::new(tried, Usable::Any)
    }

    pub fn contains(&self, i: &usize) -> bool {
        self.tried.contains(i)
            || match self.usable {
                Usable::Healthy(e) => e.get(*i).is_none_or(|e| !e.health.usable()),
                Usable::NotDraining(e) => e.get(*i).is_none_or(|e| e.health.is_draining()),
                Usable::Any => false,
            }
    }
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
        BalancerKind::ConsistentHash => Box::new(ring::Ring::new(endpoints)),
    }
}

/// The hash key a request carries for `on`; `None` when it lacks one (the ring then
/// picks any endpoint).
pub fn request_key(
    on: &HashOn,
    headers: &HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Option<u64> {
    match on {
        HashOn::ClientIp => Some(match client {
            IpAddr::V4(a) => hash_bytes(&a.octets()),
            IpAddr::V6(a) => hash_bytes(&a.octets()),
        }),
        HashOn::Header(n) => headers.get(n.as_str()).map(|v| hash_bytes(v.as_bytes())),
        HashOn::Cookie(n) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k == n)
            .map(|(_, v)| hash_bytes(v.as_bytes())),
        HashOn::Query(n) => query?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k == n)
            .map(|(_, v)| hash_bytes(v.as_bytes())),
    }
}

/// Endpoints `127.0.0.1:1000+i` with the given weights, for balancer tests.
#[cfg(test)]
pub(crate) fn test_endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
    use gatehouse_config::spec::{EndpointSpec, PoolSpec};
    let pool = PoolSpec {
        max_idle_per_endpoint: 1,
        max_connections_per_endpoint: 0,
        idle_timeout: std::time::Duration::from_secs(1),
    };
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let port = 1000 + i as u16;
            let spec = EndpointSpec {
                address: format!("127.0.0.1:{port}"),
                host: "127.0.0.1".into(),
                port,
                weight: *w,
            };
            Arc::new(Endpoint::new(spec, pool))
        })
        .collect()
}
