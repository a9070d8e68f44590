//! Upstream groups: a named set of [`Endpoint`]s, the balancer that picks among them, and
//! the connector that reaches them. Groups and endpoints are shared `Arc`s so that a
//! reload which leaves a group unchanged keeps its pools and counters.

pub mod endpoint;
pub mod lb;

use crate::http::client::Connector;
use gatehouse_config::spec::UpstreamSpec;
use std::sync::Arc;

pub use endpoint::Endpoint;

/// One `[[upstreams]]` entry, compiled.
pub struct UpstreamGroup {
    pub name: Arc<str>,
    pub spec: UpstreamSpec,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub connector: Connector,
    balancer: Box<dyn lb::Balancer>,
}

// === impl UpstreamGroup ===

impl UpstreamGroup {
    /// Builds a group, reusing endpoints (and so their pools) from `previous` where the
    /// address and the way of connecting are unchanged.
    pub fn new(spec: UpstreamSpec, connector: Connector, previous: Option<&UpstreamGroup>) -> Self {
        let same_transport = previous.is_some_and(|p| {
            p.spec.protocol == spec.protocol && p.spec.tls == spec.tls && p.spec.pool == spec.pool
        });
        let endpoints: Vec<Arc<Endpoint>> = spec
            .endpoints
            .iter()
            .map(|e| {
                let reused = previous.filter(|_| same_transport).and_then(|p| {
                    p.endpoints
                        .iter()
                        .find(|old| old.spec.address == e.address && old.spec.weight == e.weight)
                });
                match reused {
                    Some(old) => old.clone(),
                    None => Arc::new(Endpoint::new(e.clone(), spec.pool)),
                }
            })
            .collect();
        let balancer = lb::build(spec.balancer, &endpoints);
        UpstreamGroup {
            name: Arc::from(spec.name.as_str()),
            spec,
            endpoints,
            connector,
            balancer,
        }
    }

    /// Picks an endpoint not in `exclude` (indexes already tried); `key` is the request's
    /// hash key when the group hashes.
    pub fn pick(&self, exclude: &[usize], key: Option<u64>) -> Option<(usize, &Arc<Endpoint>)> {
        let i = self.balancer.pick(&self.endpoints, exclude, key)?;
        Some((i, &self.endpoints[i]))
    }
}
