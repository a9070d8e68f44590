//! One endpoint of an upstream group: its address, counters and connection pool.

use crate::http::client::Pool;
use gatehouse_config::spec::{EndpointSpec, PoolSpec};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// An address in an upstream group, with the state that outlives config generations.
pub struct Endpoint {
    pub spec: EndpointSpec,
    /// `host:port`, the label used in logs and metrics.
    pub label: Arc<str>,
    /// The address when `host` is an IP literal; names are resolved on connect.
    pub addr: Option<SocketAddr>,
    pub pool: Pool,
    pub in_flight: AtomicUsize,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// Counts a request as in flight on its endpoint until dropped.
pub struct InFlight(Arc<Endpoint>);

// === impl Endpoint ===

impl Endpoint {
    pub fn new(spec: EndpointSpec, pool: PoolSpec) -> Self {
        let addr = spec
            .host
            .parse()
            .ok()
            .map(|ip| SocketAddr::new(ip, spec.port));
        Endpoint {
            label: Arc::from(spec.address.as_str()),
            addr,
            spec,
            pool: Pool::new(pool),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Marks a request as started on this endpoint.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }

    /// Records a failed request on the endpoint.
    pub fn failed(&self) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
