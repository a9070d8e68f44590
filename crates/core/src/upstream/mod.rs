//! Upstream groups: a named set of [`Endpoint`]s, the balancer that picks among them,
//! the connector that reaches them, and the group's resilience state (breaker, retry
//! budget, sticky cookie). Groups, endpoints and that state are shared `Arc`s, so a
//! reload which keeps an endpoint or a group keeps its pools, health and counters.

pub mod breaker;
pub mod check;
pub mod discovery;
pub mod endpoint;
pub mod health;
pub mod lb;
pub mod retry;
pub mod sticky;

use crate::http::client::Connector;
use arc_swap::ArcSwap;
use gatehouse_config::spec::{EndpointSpec, ResilienceSpec, UpstreamSpec};
use health::Outcome;
use lb::{Skip, Usable};
use std::sync::Arc;
use std::time::Duration;

pub use endpoint::Endpoint;

/// One `[[upstreams]]` entry, compiled.
pub struct UpstreamGroup {
    pub name: Arc<str>,
    pub spec: UpstreamSpec,
    pub connector: Connector,
    pub breaker: Arc<breaker::Breaker>,
    pub budget: Arc<retry::Budget>,
    /// The current endpoints; replaced whole when DNS discovery finds a new set.
    members: Arc<ArcSwap<Members>>,
    /// Stops DNS discovery when the group is replaced.
    _discovery: Option<discovery::Discovery>,
}

/// An upstream group's endpoints with what is built over them: the balancer, the
/// sticky-cookie ids and the active health checks. Immutable; swapped whole.
pub struct Members {
    pub endpoints: Vec<Arc<Endpoint>>,
    balancer: Box<dyn lb::Balancer>,
    pub sticky: Option<sticky::Sticky>,
    /// Stops the active health checks when these members are replaced.
    _checks: Option<check::Checks>,
}

/// Why no endpoint could be picked, and when to come back.
#[derive(Debug)]
pub struct NoPick {
    pub message: String,
    pub retry_after: Option<Duration>,
}

// === impl Members ===

impl std::ops::Deref for Members {
    type Target = [Arc<Endpoint>];

    fn deref(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }
}

impl Members {
    /// Builds members for `list`, reusing endpoints of `previous` (and so their pools
    /// and health) with the same address and weight. New endpoints ramp up (slow start)
    /// when `ramp` is set: they join a group that is already serving.
    pub fn build(
        spec: &UpstreamSpec,
        list: &[EndpointSpec],
        connector: &Connector,
        previous: Option<&Members>,
        ramp: bool,
    ) -> Members {
        let endpoints: Vec<Arc<Endpoint>> = list
            .iter()
            .map(|e| {
                let reused = previous.and_then(|p| {
                    p.iter()
                        .find(|old| old.spec.address == e.address && old.spec.weight == e.weight)
                });
                match reused {
                    Some(old) => old.clone(),
                    None => {
                        let ep = Arc::new(Endpoint::new(e.clone(), spec.pool));
                        if ramp {
                            ep.health.start_ramp();
                        }
                        ep
                    }
                }
            })
            .collect();
        let r = &spec.resilience;
        Members {
            balancer: lb::build(spec.balancer, &endpoints),
            sticky: r
                .sticky
                .as_ref()
                .map(|s| sticky::Sticky::new(s, &spec.name, &endpoints)),
            _checks: r
                .health_check
                .as_ref()
                .and_then(|h| check::Checks::start(h, spec, &endpoints, connector)),
            endpoints,
        }
    }

    /// The endpoint listed at `address`.
    pub fn find(&self, address: &str) -> Option<&Arc<Endpoint>> {
        self.iter().find(|e| &*e.label == address)
    }
}

// === impl UpstreamGroup ===

impl UpstreamGroup {
    /// Builds a group, reusing endpoints (and so their pools and health) from `previous`
    /// where the address and the way of connecting are unchanged, and the endpoints
    /// DNS discovery last found while it looks the same name up again.
    pub fn new(spec: UpstreamSpec, connector: Connector, previous: Option<&UpstreamGroup>) -> Self {
        let same_transport = previous.filter(|p| {
            p.spec.protocol == spec.protocol && p.spec.tls == spec.tls && p.spec.pool == spec.pool
        });
        let prev_members = same_transport.map(|p| p.endpoints());
        let mut list = spec.endpoints.clone();
        // Only a group that discovers the same name carries what DNS found over.
        let same_discovery = previous.is_some_and(|p| {
            let target =
                |s: &UpstreamSpec| s.resilience.discovery.as_ref().map(|d| d.target.clone());
            target(&spec).is_some() && target(&p.spec) == target(&spec)
        });
        if let (Some(prev), true) = (previous, same_discovery) {
            for e in prev.endpoints().iter() {
                if !list.iter().any(|l| l.address == e.spec.address) {
                    list.push(e.spec.clone());
                }
            }
        }
        let members = Members::build(
            &spec,
            &list,
            &connector,
            prev_members.as_deref(),
            previous.is_some(),
        );
        let members = Arc::new(ArcSwap::from_pointee(members));
        let discovery = spec
            .resilience
            .discovery
            .as_ref()
            .and_then(|d| discovery::Discovery::start(d, &spec, &connector, &members));
        UpstreamGroup {
            name: Arc::from(spec.name.as_str()),
            breaker: previous.map(|p| p.breaker.clone()).unwrap_or_default(),
            budget: previous.map(|p| p.budget.clone()).unwrap_or_default(),
            spec,
            connector,
            members,
            _discovery: discovery,
        }
    }

    /// The current endpoints (and what is built over them).
    pub fn endpoints(&self) -> Arc<Members> {
        self.members.load_full()
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
    ) -> Result<(usize, Arc<Endpoint>), NoPick> {
        let m = self.members.load();
        if let Some(i) = preferred.filter(|i| !tried.contains(i)) {
            if let Some(ep) = m.get(i).filter(|e| e.health.usable()) {
                return Ok((i, ep.clone()));
            }
        }
        let healthy = Skip::new(tried, Usable::Healthy(&m));
        let found = m.balancer.pick(&m, &healthy, key);
        let found = match found {
            Some(i) => Some(self.slow_start(&m, i, tried, key).unwrap_or(i)),
            None if self.resilience().panic_mode && !m.iter().any(|e| e.health.usable()) => {
                let all = Skip::new(tried, Usable::NotDraining(&m));
                m.balancer.pick(&m, &all, key)
            }
            None => None,
        };
        match found {
            Some(i) => Ok((i, m[i].clone())),
            None => Err(self.no_pick(&m, tried)),
        }
    }

    /// During slow start an endpoint keeps a pick with probability equal to its ramp
    /// share; otherwise the balancer picks again without it.
    fn slow_start(
        &self,
        m: &Members,
        i: usize,
        tried: &[usize],
        key: Option<u64>,
    ) -> Option<usize> {
        let window = self.resilience().slow_start;
        let share = m[i].health.ramp(window);
        if share >= 1.0 || fastrand::f64() < share {
            return None;
        }
        let mut without = tried.to_vec();
        without.push(i);
        let skip = Skip::new(&without, Usable::Healthy(m));
        m.balancer.pick(m, &skip, key)
    }

    fn no_pick(&self, m: &Members, tried: &[usize]) -> NoPick {
        if !tried.is_empty() {
            return NoPick {
                message: format!("upstream `{}` has no endpoint left to try", self.name),
                retry_after: None,
            };
        }
        // Come back when the first ejection ends, or after one check interval.
        let retry_after = m
            .iter()
            .filter_map(|e| e.health.ejection_left())
            .min()
            .or(self.resilience().health_check.as_ref().map(|h| h.interval))
            .unwrap_or(Duration::from_secs(1));
        let message = if m.is_empty() {
            format!(
                "upstream `{}` has no endpoint (DNS found none yet)",
                self.name
            )
        } else {
            format!("upstream `{}` has no healthy endpoint", self.name)
        };
        NoPick {
            message,
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
        let m = self.members.load();
        let ejected = m.iter().filter(|e| e.health.is_ejected()).count();
        let n = m.len();
        if ejected > 0 && (ejected + 1) * 100 > o.max_ejected_percent as usize * n {
            tracing::warn!(endpoint = %ep.label, "not ejected: the group is at its ejection cap");
            return;
        }
        let d = ep.health.eject(o);
        tracing::warn!(endpoint = %ep.label, upstream = %self.name, seconds = d.as_secs_f64(), "endpoint ejected");
    }

    /// The endpoint listed at `address`.
    pub fn endpoint(&self, address: &str) -> Option<Arc<Endpoint>> {
        self.members.load().find(address).cloned()
    }

    /// Open connections across the group.
    pub fn open_connections(&self) -> usize {
        self.members.load().iter().map(|e| e.pool.open()).sum()
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
        for ep in group.endpoints().iter() {
            let kept = new
                .clone()
                .any(|g| g.endpoints().iter().any(|e| Arc::ptr_eq(e, ep)));
            if !kept {
                ep.retire(r.drain_timeout, r.drain_grace);
            }
        }
    }
}
