//! Upstream groups: a named set of [`Endpoint`]s, the balancer that picks among them,
//! the connector that reaches them, and the group's resilience state (breaker, retry
//! budget, sticky cookie). Groups, endpoints and that state are shared `Arc`s, so a
//! reload which keeps an endpoint or a group keeps its pools, health and counters.

pub mod breaker;
pub mod check;
pub mod endpoint;
pub mod health;
pub mod lb;
pub mod retry;
pub mod sticky;

use crate::http::client::Connector;
use gatehouse_config::spec::{ResilienceSpec, UpstreamSpec};
use health::Outcome;
use lb::{Skip, Usable};
use std::sync::Arc;
use std::time::Duration;

pub use endpoint::Endpoint;

/// One `[[upstreams]]` entry, compiled.
pub struct UpstreamGroup {
    pub name: Arc<str>,
    pub spec: UpstreamSpec,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub connector: Connector,
    pub breaker: Arc<breaker::Breaker>,
    pub budget: Arc<retry::Budget>,
    pub sticky: Option<sticky::Sticky>,
    balancer: Box<dyn lb::Balancer>,
    /// Stops the active health checks when the group is replaced.
    _checks: Option<check::Checks>,
}

/// Why no endpoint could be picked, and when to come back.
#[derive(Debug)]
pub struct NoPick {
    pub message: String,
    pub retry_after: Option<Duration>,
}

// === impl UpstreamGroup ===

impl UpstreamGroup {
    /// Builds a group, reusing endpoints (and so their pools and health) from `previous`
    /// where the address and the way of connecting are unchanged. Endpoints that the
    /// new spec drops are drained.
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
                    None => {
                        let ep = Arc::new(Endpoint::new(e.clone(), spec.pool));
                        // A reload that adds an endpoint ramps it up like a recovered one.
                        if previous.is_some() {
                            ep.health.start_ramp();
                        }
                        ep
                    }
                }
            })
            .collect();
        let balancer = lb::build(spec.balancer, &endpoints);
        let sticky = spec
            .resilience
            .sticky
            .as_ref()
            .map(|s| sticky::Sticky::new(s, &spec.name, &endpoints));
        let checks = spec
            .resilience
            .health_check
            .as_ref()
            .and_then(|h| check::Checks::start(h, &spec, &endpoints, &connector));
        UpstreamGroup {
            name: Arc::from(spec.name.as_str()),
            breaker: previous.map(|p| p.breaker.clone()).unwrap_or_default(),
            budget: previous.map(|p| p.budget.clone()).unwrap_or_default(),
            sticky,
            spec,
            endpoints,
            connector,
            balancer,
            _checks: checks,
        }
    }

    pub fn resilience(&self) -> &ResilienceSpec {
        &self.spec.resilience
    }

    /// Picks an endpoint not in `tried` among the healthy ones (or, in panic mode when
    /// none is healthy, among all that are not draining). `key` is the request's hash
    /// key when the group hashes; `preferred` is a sticky cookie's endpoint.
    pub fn pick(
        &self,
        tried: &[usize],
        key: Option<u64>,
        preferred: Option<usize>,
    ) -> Result<(usize, &Arc<Endpoint>), NoPick> {
        if let Some(i) = preferred.filter(|i| !tried.contains(i)) {
            if let Some(ep) = self.endpoints.get(i).filter(|e| e.health.usable()) {
                return Ok((i, ep));
            }
        }
        let healthy = Skip::new(tried, Usable::Healthy(&self.endpoints));
        let found = self.balancer.pick(&self.endpoints, &healthy, key);
        let found = match found {
            Some(i) => Some(self.slow_start(i, tried, key).unwrap_or(i)),
            None if self.resilience().panic_mode && !self.any_healthy() => {
                let all = Skip::new(tried, Usable::NotDraining(&self.endpoints));
                self.balancer.pick(&self.endpoints, &all, key)
            }
            None => None,
        };
        match found {
            Some(i) => Ok((i, &self.endpoints[i])),
            None => Err(self.no_pick(tried)),
        }
    }

    /// During slow start an endpoint keeps a pick with probability equal to its ramp
    /// share; otherwise the balancer picks again without it.
    fn slow_start(&self, i: usize, tried: &[usize], key: Option<u64>) -> Option<usize> {
        let window = self.resilience().slow_start;
        let share = self.endpoints[i].health.ramp(window);
        if share >= 1.0 || fastrand::f64() < share {
            return None;
        }
        let mut without = tried.to_vec();
        without.push(i);
        let skip = Skip::new(&without, Usable::Healthy(&self.endpoints));
        self.balancer.pick(&self.endpoints, &skip, key)
    }

    fn any_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.health.usable())
    }

    fn no_pick(&self, tried: &[usize]) -> NoPick {
        if !tried.is_empty() {
            return NoPick {
                message: format!("upstream `{}` has no endpoint left to try", self.name),
                retry_after: None,
            };
        }
        // Come back when the first ejection ends, or after one check interval.
        let retry_after = self
            .endpoints
            .iter()
            .filter_map(|e| e.health.ejection_left())
            .min()
            .or(self.resilience().health_check.as_ref().map(|h| h.interval))
            .unwrap_or(Duration::from_secs(1));
        NoPick {
            message: format!("upstream `{}` has no healthy endpoint", self.name),
            retry_after: Some(retry_after),
        }
    }

    /// Feeds one attempt's outcome on endpoint `ep` to outlier detection and the
    /// breaker. An ejection is refused when it would take the group's ejected share
    /// past `max_ejected_percent` (one ejection is always allowed).
    pub fn record(&self, ep: &Endpoint, outcome: Outcome) {
        let r = self.resilience();
        self.breaker.record(outcome, &r.breaker);
        let Some(o) = r.outlier.as_ref() else {
            return;
        };
        if !ep.health.record(outcome, Some(o)) {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.health.is_ejected())
            .count();
        let n = self.endpoints.len();
        if ejected > 0 && (ejected + 1) * 100 > o.max_ejected_percent as usize * n {
            tracing::warn!(endpoint = %ep.label, "not ejected: the group is at its ejection cap");
            return;
        }
        let d = ep.health.eject(o);
        tracing::warn!(endpoint = %ep.label, upstream = %self.name, seconds = d.as_secs_f64(), "endpoint ejected");
    }

    /// The endpoint listed at `address`, by index.
    pub fn endpoint(&self, address: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.iter().find(|e| &*e.label == address)
    }

    /// Open connections across the group.
    pub fn open_connections(&self) -> usize {
        self.endpoints.iter().map(|e| e.pool.open()).sum()
    }
}

/// Once a reload is committed: retires every endpoint of `old` that `new` no longer
/// holds (by identity, so an endpoint rebuilt with a new transport counts as removed).
pub fn retire_removed<'a>(
    old: impl Iterator<Item = &'a UpstreamGroup>,
    new: impl Iterator<Item = &'a UpstreamGroup> + Clone,
) {
    for group in old {
        let r = group.resilience();
        for ep in &group.endpoints {
            let kept = new
                .clone()
                .any(|g| g.endpoints.iter().any(|e| Arc::ptr_eq(e, ep)));
            if !kept {
                ep.retire(r.drain_timeout, r.drain_grace);
            }
        }
    }
}
